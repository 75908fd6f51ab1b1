"""PyInstaller runtime hook of CPU-only bundles: hide every GPU from torch before it is imported.

A CPU-only bundle built from a CUDA torch (``packaging/build.sh --cpu-only``) leaves out the CUDA
libraries that torch loads only when it uses a GPU (cuDNN's engines, CUDA linear algebra, ...), so
it must never try to. With ``CUDA_VISIBLE_DEVICES`` empty, ``torch.cuda.is_available()`` is False
and training and prediction run on the CPU, even on a machine with an NVIDIA GPU.
"""

import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ["TRANSFER_STUDIO_BUNDLE_FLAVOUR"] = "cpu-only"
