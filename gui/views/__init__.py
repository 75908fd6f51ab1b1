"""Widgets that show things and hold no workflow: banners and labels, plots, thumbnail grids, probability
bars, Grad-CAM overlays, the model picker, and controls generated from a setting's declaration."""
