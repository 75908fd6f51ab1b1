"""``python -m engine.cli``: the command line (what torchrun starts for each process of a run)."""

import sys

from engine.cli import main

sys.exit(main())
