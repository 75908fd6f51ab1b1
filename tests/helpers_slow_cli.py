"""``python tests/helpers_slow_cli.py PHASE ARGS...``: the command line with one phase made slow (each
step of it takes a second), and ``SLOW`` printed on standard error when that phase begins, so a test can
send Ctrl+C or SIGTERM in the middle of it (tests/test_signals.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's engine

STEP_S = 1.0
_announced = False


def _slow(real):
    def slow(*args, **kwargs):
        global _announced
        if not _announced:
            _announced = True
            print("SLOW", file=sys.stderr, flush=True)
        time.sleep(STEP_S)
        return real(*args, **kwargs)

    return slow


def main() -> int:
    phase, argv = sys.argv[1], sys.argv[2:]
    if phase == "scan":
        import engine.data.datasets as datasets

        datasets.verify_image = _slow(datasets.verify_image)
    elif phase == "features":
        import engine.training.features as features

        features.FeatureExtractor.__call__ = _slow(features.FeatureExtractor.__call__)
    elif phase == "epochs":
        import engine.training.loop as loop

        loop._step = _slow(loop._step)
    elif phase == "predict":
        from engine.inference.predict import Predictor

        Predictor.load = _slow(Predictor.load)
    from engine.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
