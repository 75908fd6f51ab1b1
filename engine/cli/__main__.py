"""``python -m engine.cli``: the command line (what torchrun starts for each process of a run)."""

import sys

from engine.cli import main, skip_final_collection

if __name__ == "__main__":
    code = main()
    skip_final_collection()
    sys.exit(code)
