"""Decoding a 12-megapixel phone photo (4000x3000 JPEG) for a 256-px pipeline: full decode then
resize (before) against PIL's draft mode (engine.data.images.open_image with min_size).

    .venv/bin/python benchmarks/jpeg_draft.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    import numpy as np
    from PIL import Image
    from torchvision.transforms import functional as TF

    from engine.data.images import open_image

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "phone.jpg"
        rng = np.random.default_rng(0)
        small = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)  # smooth content, like a photo
        Image.fromarray(small).resize((4000, 3000), Image.Resampling.BICUBIC).save(path, quality=90)
        timings = {}
        for name, min_size in (("full decode", None), ("draft mode", 256)):
            start = time.perf_counter()
            for _ in range(args.repeat):
                TF.resize(open_image(path, min_size=min_size), 256, antialias=True)
            timings[name] = (time.perf_counter() - start) / args.repeat
    full, draft = timings["full decode"], timings["draft mode"]
    print(
        f"4000x3000 JPEG to 256 px: full decode {full * 1000:.0f} ms, draft mode {draft * 1000:.0f} ms ({full / draft:.1f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
