"""LoRA training: options, data rules, preview, base preparation, the loop, memory estimate, merge."""
