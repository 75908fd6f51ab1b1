"""Transfer Studio's training engine: datasets, model catalog, trainer, bundles, prediction.

Pure torch/torchvision/PIL. Nothing in this package imports Qt or the ``gui`` package.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("transfer-studio")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
