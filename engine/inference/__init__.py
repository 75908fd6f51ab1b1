"""Inference: using a trained bundle, predicting, evaluating, exporting (ONNX, TorchScript) with a
parity check, and Grad-CAM. Imports nothing from the training layer (an import-linter contract).
"""
