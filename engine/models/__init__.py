"""Models: the registry of architectures, pretrained weights files, building a model with a new head,
preprocessing, and bundles (a trained model with what it needs to predict). Knows nothing of training.
"""
