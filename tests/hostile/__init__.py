"""The hostile-input corpus: bad files, flags, settings, rows and signals, each with its exact one-line error."""
