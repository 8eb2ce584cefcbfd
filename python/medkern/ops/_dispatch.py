"""When an op may skip torch's dispatcher and call its backend directly."""
from __future__ import annotations

import torch

_PLAIN = (torch.Tensor, torch.nn.Parameter)
_functorch_transform = torch._C._functorch.peek_interpreter_stack
_dispatch_modes = torch._C._len_torch_dispatch_stack


def plain_eager(*tensors: torch.Tensor | None) -> bool:
    """True for a plain eager call: no tracer or compiler is watching, no dispatch mode (fake tensors,
    flop counters) and no functorch transform (vmap, grad) is active, and no tensor is a subclass. Whether
    gradients are wanted is not asked here (see ``fast_path_ok``)."""
    # Functorch's wrapped tensors live only inside a transform (one that escapes is dead: torch refuses
    # it, and so does the kernels' DLPack hand-off), so one look at the transform stack replaces a look
    # at every tensor (0.2 us each; a cell step passes seven).
    if (torch.compiler.is_compiling() or torch.jit.is_tracing() or _dispatch_modes() > 0
            or _functorch_transform() is not None):
        return False
    # nn.Parameter is a plain tensor to the kernels (module weights take the fast path); other subclasses
    # may override torch functions, so they go through the custom op. (A loop, not all() over a generator:
    # this runs on every call of every op, and a cell step at batch 1 is a few microseconds.)
    for t in tensors:
        if t is not None and type(t) not in _PLAIN:
            return False
    return True


def fast_path_ok(*tensors: torch.Tensor | None) -> bool:
    """True for a plain eager call that needs no autograd graph: no gradient will be asked for and
    ``plain_eager`` holds. Everything else goes through the custom op."""
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return False
    return plain_eager(*tensors)


def grad_wanted(ctx, index: int, t: torch.Tensor | None) -> bool:
    """``ctx.needs_input_grad[index]``, narrowed to the backward pass running now. ``needs_input_grad`` is
    fixed when the graph is built, but ``torch.autograd.grad(out, inputs)`` runs only the part of the graph
    that reaches ``inputs``: a gradient penalty's first pass wants a critic's input gradients and not its
    weight gradients. torch's own convolution backward skips the unwanted ones the same way. Where the
    engine cannot say (no backward running, a captured leaf, an older torch) the gradient is computed.

    Only a backward that builds a graph (``create_graph=True``, as a penalty's first pass does) asks: the
    engine's answer costs about 20 us a query (a 1x4x8x8 convolution's forward and backward took 219 us
    with both queries, 173 us without), while a backward that builds none (``loss.backward()``, the hot
    path of training) wants every gradient in almost every use; where it does not (an explanation's
    ``torch.autograd.grad(score, image)``), the unwanted gradient is computed and dropped."""
    if not ctx.needs_input_grad[index]:
        return False
    if not torch.is_grad_enabled():
        return True
    try:
        return bool(torch._C._will_engine_execute_node(torch.autograd.graph.get_gradient_edge(t).node))
    except (RuntimeError, AttributeError, TypeError):
        return True
