"""``python -m engine.cli``: the command line (what torchrun starts for each process of a run)."""

import sys

from engine.cli import main

if __name__ == "__main__":
    sys.exit(main())
