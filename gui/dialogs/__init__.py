"""Dialogs opened from the menus and the tabs: export, report, weights download or import, environment."""
