"""Ranks step until a stop request (the launcher's stop file, or Ctrl+C) reaches any of them.

Usage: ``python -m distributed_scripts.stop_loop OUT [ignore]``. Rank 0 creates ``OUT/running`` after
step 5; each rank writes ``OUT/rank<R>.json`` with the step at which it stopped. With ``ignore`` the
ranks never look at stop requests (only a hard stop ends them) and write ``OUT/pid<R>`` first.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from engine.training import distributed as D


def main() -> int:
    out = Path(sys.argv[1])
    ignore = sys.argv[2:] == ["ignore"]
    d = D.init_from_env("cpu", timeout_s=30)
    (out / f"pid{d.rank}").write_text(str(os.getpid()))
    stop = D.StopRequest()
    stop.install_sigint()
    stopped_at = -1
    finished = False
    try:
        for step in range(3000):
            if D.agree_to_stop(stop() and not ignore, d):
                stopped_at = step
                break
            if step == 5 and d.is_main:
                (out / "running").touch()
            time.sleep(0.01 * (1 + d.rank))  # ranks at different speeds: the agreement must still line up
        (out / f"rank{d.rank}.json").write_text(json.dumps({"stopped_at": stopped_at, "own": stop.requested}))
        finished = True
    finally:
        D.shutdown(d, finished=finished)
    return 0


if __name__ == "__main__":
    sys.exit(main())
