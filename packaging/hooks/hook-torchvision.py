"""PyInstaller hook for torchvision (overrides the contributed one, which expects ``torchvision._C``).

Since torchvision 0.29 the compiled operators live in ``_C_stable.so`` and ``image_stable.so``, which
``torchvision.extension`` loads by file name from the package folder (``torch.ops.load_library``), not
by import, so PyInstaller's import analysis cannot see them: collect every shared library of the
package into ``torchvision/``. Keep the sources next to the byte code (``pyz+py``), as torch's
TorchScript needs them.
"""

from PyInstaller.utils.hooks import collect_dynamic_libs

module_collection_mode = "pyz+py"
# The default patterns match only lib*.so on Linux: these are named _C_stable.so and image_stable.so.
binaries = collect_dynamic_libs(
    "torchvision", search_patterns=["*.so", "*.so.*", "*.dylib", "*.dll", "*.pyd"]
)
