"""``torch.compile(model, backend="medkern")``: Dynamo captures the graph, AOTAutograd lowers it to ATen ops,
and an inference graph (no gradient wanted) goes through medkern's passes (passes.py). A training graph runs
its forward and backward as captured, which is correct but not faster: training fusions are not built yet."""
from __future__ import annotations

import torch
from torch._dynamo.backends.common import aot_autograd
from torch._functorch.aot_autograd import make_boxed_func

from .passes import fuse_convolutions


# AOTAutograd calls what a compiler returns with one list of arguments ("boxed"), which it can free early.
def _inference(gm: torch.fx.GraphModule, example_inputs):
    fuse_convolutions(gm)
    return make_boxed_func(gm)


def _as_captured(gm: torch.fx.GraphModule, example_inputs):
    return make_boxed_func(gm)


_aot = aot_autograd(fw_compiler=_as_captured, bw_compiler=_as_captured, inference_compiler=_inference)


def medkern_backend(gm: torch.fx.GraphModule, example_inputs, **kwargs):
    """The ``torch_dynamo_backends`` entry point named ``medkern``."""
    return _aot(gm, example_inputs, **kwargs)


class Optimized(torch.nn.Module):
    """A model compiled for inference: calls run without gradients through ``backend="medkern"``. The wrapped
    model stays reachable as ``.model`` (its parameters are the compiled graph's; change them in place and the
    next call uses them)."""

    def __init__(self, model: torch.nn.Module, dynamic=None):
        super().__init__()
        self.model = model
        self._compiled = torch.compile(model, backend=medkern_backend, dynamic=dynamic)

    def forward(self, *args, **kwargs):
        with torch.no_grad():
            return self._compiled(*args, **kwargs)


def optimize(model: torch.nn.Module, *, dynamic=None) -> Optimized:
    """``model`` (put in eval mode) compiled for inference with ``backend="medkern"``: BatchNorm folded into the
    convolutions before it, residual adds and ReLU/LeakyReLU fused into their output pass, weights packed once.
    ``dynamic`` is passed to ``torch.compile`` (None: a new batch size recompiles once, then shapes are dynamic)."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    return Optimized(model.eval(), dynamic=dynamic)
