"""Core: the vocabulary every layer shares. Errors and cancellation, run settings (``TrainConfig``),
the device choice, atomic files, the run-folder layout, the CLI's command table. Imports no other layer.
"""
