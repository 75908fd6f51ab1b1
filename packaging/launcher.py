"""Entry script of the PyInstaller bundle: exactly the ``transfer-studio`` command (``gui.shell.launch:main``).

``multiprocessing.freeze_support()`` makes a frozen app safe if a library ever starts a child process
with the "spawn" method (Windows, macOS); on Linux it does nothing.
"""

from __future__ import annotations

import multiprocessing
import sys

from gui.shell.launch import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
