"""Data: finding and checking a dataset folder (classes, splits, skipped files) and decoding photos."""
