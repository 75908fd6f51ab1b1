"""Transfer Studio's icons and desktop-integration files, as package data.

``gui/shell/icon.py`` reads them with ``importlib.resources.files("resources")``, so they work from a source
tree, an installed wheel and the PyInstaller bundle alike. ``packaging/make_icons.py`` renders the
sizes and formats from ``transfer-studio.svg``; ``packaging/install_linux_desktop.sh`` installs the
``.desktop`` file and the ``icons/hicolor`` theme icons into the applications menu.
"""
