"""Snapshots of every pane and dialog at 80x24 and a wider size, with machine paths made deterministic."""
