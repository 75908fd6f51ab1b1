"""Two ranks take steps; at step 3 rank 1 dies (``exit``) or hangs (``hang``); rank 0 reports what it saw.

Usage: ``python -m distributed_scripts.peer_failure MODE TIMEOUT_S OUT``. Rank 0 writes ``OUT/rank0.json``
with the error it got and how long after the failure, then exits 3.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from engine.training import distributed as D

FAIL_AT = 3


def main() -> int:
    mode, timeout_s, out = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])
    with D.process_group("cpu", timeout_s=timeout_s) as d:  # leaves the group on the way out, failed or not
        failed_at = 0.0
        try:
            for step in range(1000):
                if step == FAIL_AT:
                    failed_at = time.monotonic()
                    if d.rank == 1:
                        if mode == "exit":
                            os._exit(7)
                        time.sleep(600)
                D.agree_to_stop(False, d)
                time.sleep(0.02)
        except D.PeerLost as exc:
            (out / f"rank{d.rank}.json").write_text(
                json.dumps({"error": str(exc), "seconds": time.monotonic() - failed_at, "step": step})
            )
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
