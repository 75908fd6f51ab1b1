"""Transfer Studio's engine, in layers (top to bottom): ``cli``, ``doctor``, ``training`` | ``inference``,
``models``, ``data``, ``core``. A layer imports only the layers below it (import-linter contracts in
pyproject.toml; docs/architecture.md). Pure torch/torchvision/PIL: nothing here imports Qt or ``gui``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("transfer-studio")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
