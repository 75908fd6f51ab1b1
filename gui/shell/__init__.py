"""Starting the app and the window around the tabs: entry points (standard library until a window is
wanted), the Qt platform check, the QApplication, the main window with its menus, and the self-test."""
