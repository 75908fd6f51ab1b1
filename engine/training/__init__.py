"""Training: the loop (``trainer``), its state and events, the two data paths (cached backbone features
or decoded images), augmentation, strategies, checkpoints and the feature cache.
"""
