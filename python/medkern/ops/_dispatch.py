"""How an op call is routed: the one rule every op family follows.

Each op has up to three implementations with one signature:

- the **kernel**: the backend called directly, for a plain eager call that needs no autograd graph (the
  inference hot path: no dispatcher, no graph, a few microseconds of Python);
- the **eager twin**: a ``torch.autograd.Function`` over the same kernel (its ``apply``), for a plain eager
  call that needs gradients (a training step: no dispatcher round trip either);
- the **custom op**: the ``torch.library`` op with its fake kernel and registered autograd, for everything
  else: ``torch.compile``, tracing, dispatch modes (fake tensors, flop counters), functorch transforms
  (vmap, grad) and tensor subclasses. An op without an eager twin passes its custom op in the twin's place.

``route(kernel, twin, op, *tensors)`` picks one of them for a call; the caller then calls it, so routing
costs one function call and no allocation beyond its arguments.
"""
from __future__ import annotations

import torch

_PLAIN = (torch.Tensor, torch.nn.Parameter)
_functorch_transform = torch._C._functorch.peek_interpreter_stack
_dispatch_modes = torch._C._len_torch_dispatch_stack


def route(kernel, twin, op, *tensors: torch.Tensor | None):
    """Which of ``kernel``, ``twin`` and ``op`` runs a call whose tensor arguments are ``tensors`` (None
    allowed): ``op`` unless the call is plain eager, else ``twin`` if a gradient is wanted (grad mode on
    and some tensor requires grad), else ``kernel``.

    Plain eager: no tracer or compiler is watching, no dispatch mode and no functorch transform is active,
    and every tensor is a ``torch.Tensor`` or an ``nn.Parameter`` (a plain tensor to the kernels; module
    weights take the fast path). Other subclasses may override torch functions, so they get the custom op.
"""
    # Functorch's wrapped tensors live only inside a transform (one that escapes is dead: torch refuses
    # it, and so does the kernels' DLPack hand-off), so one look at the transform stack replaces a look
    # at every tensor (0.2 us each; a cell step passes seven).
    if (torch.compiler.is_compiling() or torch.jit.is_tracing() or _dispatch_modes() > 0
            or _functorch_transform() is not None):
        return op
    # A loop, not all()/any() over a generator: this runs on every call of every op, and a cell step at
    # batch 1 is a few microseconds.
    grad = torch.is_grad_enabled()
    run = kernel
    for t in tensors:
        if t is not None:
            if type(t) not in _PLAIN:
                return op
            if grad and t.requires_grad:
                run = twin
    return run


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
