"""``torch.compile(model, backend="medkern")``: Dynamo captures the graph, AOTAutograd lowers it to ATen ops,
and an inference graph (no gradient wanted) goes through medkern's passes (passes.py). A training graph's
forward and backward run their convolutions and batch normalisations on medkern's kernels (training.py); the
inference passes' fusions (BatchNorm folding, epilogues, prologues) are not built for training yet."""
from __future__ import annotations

import contextlib
import functools

import torch
from torch._dynamo.backends.common import aot_autograd
from torch._functorch.aot_autograd import make_boxed_func

from ..nn import patch
from .hoist import hoist_parameter_work
from .passes import fuse_convolutions, fuse_transposed_convolutions
from .pooling import use_medkern_pooling
from .recurrence import lean_recurrences
from .training import use_medkern_kernels

_RECURRENT = (torch.nn.LSTM, torch.nn.GRU, torch.nn.LSTMCell, torch.nn.GRUCell)


# AOTAutograd calls what a compiler returns with one list of arguments ("boxed"), which it can free early.
def _inference(gm: torch.fx.GraphModule, example_inputs, weight_positions):
    fuse_convolutions(gm)
    fuse_transposed_convolutions(gm)
    use_medkern_pooling(gm)
    lean_recurrences(gm)
    hoist_parameter_work(gm, weight_positions)
    return make_boxed_func(gm)


def _training(gm: torch.fx.GraphModule, example_inputs):
    use_medkern_kernels(gm)
    return make_boxed_func(gm)


def _weight_positions(gm: torch.fx.GraphModule, example_inputs) -> list[bool]:
    """Which graph inputs are the model's parameters and buffers (Dynamo names a buffer input ..._buffers_...);
    AOTAutograd's inference graph takes the same inputs in the same order."""
    names = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
    return [isinstance(t, torch.nn.Parameter) or "_buffers_" in name for t, name in zip(example_inputs, names)]


def medkern_backend(gm: torch.fx.GraphModule, example_inputs, **kwargs):
    """The ``torch_dynamo_backends`` entry point named ``medkern``."""
    inference = functools.partial(_inference, weight_positions=_weight_positions(gm, example_inputs))
    aot = aot_autograd(fw_compiler=_training, bw_compiler=_training, inference_compiler=inference)
    return aot(gm, example_inputs, **kwargs)


@functools.cache
def _rnn_tracing():
    """Dynamo refuses to trace into any nn.RNN/GRU/LSTM subclass unless allow_rnn is set; medkern's LSTM and GRU
    (subclasses, for isinstance and state_dict compatibility) are one custom op each and trace whole. Set for
    the optimized models' own calls only, not for the process. One patch, made once and entered on every call
    (re-entrant, and per thread where torch keeps its settings per thread): making one per call (a class and a
    context variable each time) cost more than a small network's fused layer."""
    return torch._dynamo.config.patch(allow_rnn=True)


class Optimized(torch.nn.Module):
    """A model compiled for inference: calls run without gradients through ``backend="medkern"``. The wrapped
    model stays reachable as ``.model`` (its parameters are the compiled graph's; change them in place and the
    next call uses them)."""

    def __init__(self, model: torch.nn.Module, dynamic=None, fullgraph: bool = False):
        super().__init__()
        self.model = model
        self._compiled = torch.compile(model, backend=medkern_backend, dynamic=dynamic, fullgraph=fullgraph)
        self._holds_rnn = any(isinstance(m, torch.nn.RNNBase) for m in model.modules())

    def forward(self, *args, **kwargs):
        with torch.no_grad(), _rnn_tracing() if self._holds_rnn else contextlib.nullcontext():
            return self._compiled(*args, **kwargs)


def optimize(model: torch.nn.Module, *, dynamic=None, fullgraph: bool = False) -> Optimized:
    """``model`` (put in eval mode) compiled for inference with ``backend="medkern"``: BatchNorm folded into the
    convolutions before it, residual adds and ReLU/LeakyReLU fused into their output pass, weights packed once,
    other computations from the parameters alone (a transposed Linear weight, a GRU's stacked weights) done once;
    torch's LSTM/GRU (and cells) swapped for medkern's in place, and those captured in the graph. ``dynamic`` and ``fullgraph`` are ``torch.compile``'s (dynamic
    None: a new batch size recompiles once, then shapes are dynamic; fullgraph: an error instead of a graph
    break)."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    # torch's recurrent layers become medkern's in place (as medkern.patch does): the graph passes have nothing
    # to fuse in them, and medkern's run as one op each.
    patch(model, fuse=False, only=_RECURRENT)
    return Optimized(model.eval(), dynamic=dynamic, fullgraph=fullgraph)
