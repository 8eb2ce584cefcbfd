"""``medkern.patch(model)``: swap torch layers for medkern's in place. Each kernel family registers its
torch class -> medkern class pairs here; a medkern class must be a subclass of the torch class that
changes only the computation, so the swap is a class change that keeps every parameter, buffer, hook
and optimizer reference."""
from __future__ import annotations

import torch

_SWAPS: dict[type, type] = {}
_SUPPORTED_DTYPES = (torch.float32, torch.float64)


def register_swap(torch_cls: type, medkern_cls: type) -> None:
    if not issubclass(medkern_cls, torch_cls):
        raise TypeError(f"{medkern_cls.__name__} must subclass {torch_cls.__name__} to be swapped in place")
    _SWAPS[torch_cls] = medkern_cls


def _swappable(module: torch.nn.Module) -> bool:
    # Exact type only: a user's subclass may override forward, which the swap would silently drop.
    if type(module) not in _SWAPS:
        return False
    return all(p.dtype in _SUPPORTED_DTYPES for p in module.parameters(recurse=False))


def patch(model: torch.nn.Module, fuse: bool = True, only: tuple[type, ...] | None = None) -> torch.nn.Module:
    """Replaces, in place, every layer of ``model`` (itself included) that medkern implements, keeping
    its weights, and returns ``model``. Layers in dtypes medkern does not compute are left alone; with
    ``only`` (torch layer classes), so are layers of other classes.

    With ``fuse``, inside an ``nn.Sequential``: a ``Conv1d/2d/3d`` directly followed by a ``ReLU`` or
    ``LeakyReLU`` computes the activation in its output pass; followed by the ``BatchNorm1d/2d/3d`` of its rank,
    and optionally the activation, it computes in eval mode the normalisation too, folded
    into its weights (``medkern.nn.batchnorm``). The activation's slot becomes an ``nn.Identity`` (see
    :func:`_fuse_sequences` for when fusion is done)."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    for module in model.modules():
        if _swappable(module) and (only is None or type(module) in only):
            module.__class__ = _SWAPS[type(module)]
    if fuse:
        _fuse_sequences(model)
    return model


def _has_hooks(m: torch.nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                or getattr(m, "_backward_pre_hooks", None))


def _fused_form(act: torch.nn.Module):
    """(activation, slope) a conv can fuse in place of ``act``, or None. A negative LeakyReLU slope is not
    fused: the backward could not tell the input's sign from the output."""
    if type(act) is torch.nn.ReLU:
        return "relu", 0.0
    if type(act) is torch.nn.LeakyReLU and act.negative_slope >= 0:
        return "leaky_relu", float(act.negative_slope)
    return None


def _fuse_sequences(model: torch.nn.Module) -> None:
    """Fuses only where the outputs stay the same: the container is an exact ``nn.Sequential`` (a subclass
    may have its own forward), the conv or BatchNorm is medkern's and it and a fused BatchNorm are used nowhere
    else in the model (a shared layer would gain the activation at its other uses too; an activation may be
    shared, only this slot of it is replaced), and no fused layer has hooks (which would observe the
    intermediate outputs or calls). ReLU/LeakyReLU hold no state and the BatchNorm stays where it was, so
    state_dict keys stay."""
    from .batchnorm import FOLDED
    from .conv import Conv1d, Conv2d, Conv3d
    from .norm import BatchNorm1d, BatchNorm2d, BatchNorm3d

    # A convolution and the BatchNorms (torch's, or medkern's where it was swapped in) that can follow it.
    norms_of = {Conv1d: (torch.nn.BatchNorm1d, BatchNorm1d), Conv2d: (torch.nn.BatchNorm2d, BatchNorm2d),
                Conv3d: (torch.nn.BatchNorm3d, BatchNorm3d)}
    norms = (BatchNorm1d, BatchNorm2d, BatchNorm3d)

    uses: dict[int, int] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        uses[id(m)] = uses.get(id(m), 0) + 1

    def free(*layers) -> bool:
        return all(uses[id(m)] == 1 and not _has_hooks(m) for m in layers)

    def fuse_activation(seq, names, at: int, layer) -> bool:
        """Moves the activation in slot ``at`` into ``layer`` (conv or BatchNorm) where it can be fused."""
        act = seq._modules[names[at]] if at < len(names) else None
        form = _fused_form(act) if act is not None else None
        if form is None or _has_hooks(act):
            return False
        layer.fused_activation, layer.negative_slope = form
        seq._modules[names[at]] = torch.nn.Identity()
        return True

    for seq in model.modules():
        if type(seq) is not torch.nn.Sequential:
            continue
        names = list(seq._modules)
        i = 0
        while i < len(names) - 1:
            layer, nxt = seq._modules[names[i]], seq._modules[names[i + 1]]
            i += 1
            if getattr(layer, "fused_activation", None) is not None or "folded_batchnorm" in layer.__dict__:
                continue
            if type(layer) in norms:
                if free(layer) and fuse_activation(seq, names, i, layer):
                    i += 1
                continue
            if type(layer) not in norms_of:
                continue
            if (type(nxt) in norms_of[type(layer)] and nxt.num_features == layer.out_channels
                    and nxt.running_mean is not None and free(layer, nxt)):
                nxt.__class__ = FOLDED[type(nxt)]
                layer.__dict__["folded_batchnorm"] = nxt
                i += 1 + fuse_activation(seq, names, i + 1, nxt)
                continue
            if free(layer) and fuse_activation(seq, names, i, layer):
                i += 1
