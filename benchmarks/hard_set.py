"""A harder copy of a train/val image folder: small, blurred photos and some wrong training labels.

Every photo is shrunk so its shorter side is :data:`SIZE` pixels, blurred (Gaussian, radius
:data:`BLUR_RADIUS`) and saved as PNG; then :data:`NOISE` of each class's training photos (chosen by a
seeded shuffle of the sorted file names) are moved to the next class's folder. The validation photos
keep their true labels, so validation accuracy measures how well the noisy training generalises.
The same source always gives the same files, byte for byte.

    python benchmarks/hard_set.py ../shared/data/hymenoptera /tmp/hymenoptera-hard
"""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

from PIL import Image, ImageFilter

SIZE = 96
BLUR_RADIUS = 1.0
NOISE = 0.10
SEED = 0
EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"}


def build_hard_set(source: Path, out: Path) -> Path:
    """Write the harder copy of ``source`` (with ``train/`` and ``val/``) to ``out``; returns ``out``."""
    if out.exists():
        shutil.rmtree(out)
    classes = sorted(p.name for p in (source / "train").iterdir() if p.is_dir())
    for split in ("train", "val"):
        for name in classes:
            files = sorted(
                p for p in (source / split / name).iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file()
            )
            moved: set[Path] = set()
            if split == "train":
                shuffled = list(files)
                random.Random(f"{SEED}|{name}").shuffle(shuffled)
                moved = set(shuffled[: round(NOISE * len(files))])
            for path in files:
                label = classes[(classes.index(name) + 1) % len(classes)] if path in moved else name
                target = out / split / label / f"{name}-{path.stem}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                _degrade(path).save(target, format="PNG", optimize=False)
    return out


def _degrade(path: Path) -> Image.Image:
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    scale = SIZE / min(rgb.size)
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    small = rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=None)
    return small.filter(ImageFilter.GaussianBlur(BLUR_RADIUS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    build_hard_set(args.source, args.out)
    print(args.out)


if __name__ == "__main__":
    main()
