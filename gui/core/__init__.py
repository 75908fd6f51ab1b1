"""What every part of the window stands on: the saved user settings, and the Qt work-arounds that must
run before Qt is used."""
