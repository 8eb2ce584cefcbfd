"""medkern: fast, tested kernels for medical deep learning, as drop-in PyTorch layers.

``medkern.ops`` holds the functional ops (``torch.library`` custom ops), ``medkern.nn`` the drop-in
modules, ``medkern.patch(model)`` swaps them into an existing model, and ``medkern.backends`` selects
the implementation (native C++/CUDA, numba, cupy, or the plain-torch reference).

The rest is imported on first use (``medkern.models`` and friends pull in scikit-learn, matplotlib and
the data readers, which ``import medkern`` alone must not pay for): ``medkern.data``, ``medkern.losses``,
``medkern.metrics``, ``medkern.models``, ``medkern.serving``, ``medkern.train`` and ``medkern.viz``.
"""
from importlib import import_module as _import_module
from importlib.metadata import PackageNotFoundError as _PackageNotFoundError, version as _version

from . import backends, nn, ops
from .nn import patch
from .ops._alloc import cache_info, empty_cache

try:
    __version__ = _version("medkern")
except _PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

# Subpackages imported by attribute access (PEP 562), not by ``import medkern``.
_LAZY = ("compile", "data", "losses", "metrics", "models", "serving", "train", "viz")

# Listing the lazy subpackages makes ``from medkern import *`` import them all, as it would for eager ones.
__all__ = ["backends", "cache_info", "empty_cache", "nn", "ops", "optimize", "patch", "__version__", *_LAZY]


def optimize(model, *, dynamic=None, fullgraph=False):
    """``model`` compiled for inference with ``torch.compile(backend="medkern")``: see :func:`medkern.compile.optimize`."""
    from .compile import optimize as _optimize
    return _optimize(model, dynamic=dynamic, fullgraph=fullgraph)


def __getattr__(name: str):
    if name in _LAZY:
        # import_module binds the subpackage as an attribute of this module, so this runs once per name.
        return _import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r} (its subpackages and functions: "
                         f"{', '.join(sorted(n for n in __all__ if n != '__version__'))})")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
