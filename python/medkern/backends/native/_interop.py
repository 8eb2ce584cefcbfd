"""Zero-copy hand-off of torch tensors to the compiled modules, on the right device and stream."""
from __future__ import annotations

import contextlib

import torch
from torch.utils.dlpack import to_dlpack

from ... import _native


# dl(t): a DLPack capsule of t (no copy). torch's to_dlpack itself, not a wrapper (every kernel call makes
# several): it exports a tensor that requires grad as it is (only Tensor.__dlpack__ refuses one), and
# autograd state is irrelevant to a kernel.
dl = to_dlpack


_NO_CONTEXT = contextlib.nullcontext()


def module_and_stream(t: torch.Tensor):
    """The compiled module for ``t``'s device, the stream handle to launch on, and a context that
    makes ``t``'s GPU current."""
    if t.is_cuda:
        return _native._C_cuda, torch.cuda.current_stream(t.device).cuda_stream, torch.cuda.device(t.device)
    return _native.require_cpu(), 0, _NO_CONTEXT
