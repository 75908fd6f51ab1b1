"""Which file a bundle path names, and whether it can be a bundle at all, without importing torch.

``predict``, ``evaluate`` and ``export`` answer a wrong path or a file that is no PyTorch file (a
photo, an ONNX model, a truncated download) in a fraction of a second, before torch loads;
:func:`engine.models.bundle.load_bundle` makes the same checks first, so the words are the same.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from engine.core.errors import BundleError

#: The first byte of a pickle of protocol 2 or later: PyTorch's legacy (non-zip) format starts so.
_PICKLE_PROTOCOL = 0x80


def bundle_file(path: str | Path) -> Path:
    """The bundle file ``path`` names (a run folder names its ``model.pt``); BundleError with a one-line
    reason when there is none, or when the file is neither a zip archive (what ``torch.save`` writes)
    nor a legacy PyTorch pickle."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no such file")
    if path.is_dir():
        candidate = path / "model.pt"
        if not candidate.is_file():
            raise BundleError(f"{path} is a folder without a model.pt bundle")
        path = candidate
    try:
        with path.open("rb") as stream:
            first = stream.read(1)
        is_zip = zipfile.is_zipfile(path)
    except OSError as exc:
        raise BundleError(f"{path.name} cannot be read ({exc.strerror or exc})") from None
    if not is_zip and first != bytes([_PICKLE_PROTOCOL]):
        raise BundleError(f"{path.name} is not a Transfer Studio model bundle (not a PyTorch file)")
    return path
