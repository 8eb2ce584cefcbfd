"""medkern: fast, tested kernels for medical deep learning, as drop-in PyTorch layers.

``medkern.ops`` holds the functional ops (``torch.library`` custom ops), ``medkern.nn`` the drop-in
modules, ``medkern.patch(model)`` swaps them into an existing model, and ``medkern.backends`` selects
the implementation (native C++/CUDA, numba, cupy, or the plain-torch reference).
"""
from importlib.metadata import PackageNotFoundError, version as _version

from . import backends, losses, nn, ops
from .nn import patch
from .ops._alloc import cache_info, empty_cache

try:
    __version__ = _version("medkern")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = ["backends", "cache_info", "empty_cache", "losses", "nn", "ops", "patch", "__version__"]
