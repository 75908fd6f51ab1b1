"""Transfer Studio's desktop window (PySide6 + pyqtgraph), built on top of ``engine``.

Importing this package itself pulls in no Qt: the CLI entry point lives in ``gui.shell.launch`` and only imports
Qt when the window is actually opened.
"""
