"""Recurrent ops: LSTM and GRU layers over whole sequences, and their single-step cells, with torch's
equations, gate order, parameter layout and return values.

One layer runs as: the input projection for every step and both directions as one matrix product
(``gx = x W_ih^T + b``), then per direction the backend's recurrence (per step a small product with W_hh
and one fused pointwise pass; the time loop never returns to Python). The backward pass mirrors it: the
backend's recurrence produces the gate gradients of every step, then the weight gradients are large
products over all steps at once (the backend's ``matmul`` where it has one, else torch's; for a narrow
input one pass of the backend's). Those three, like the single-step cell, are optional backend entries,
used where the backend declares them (``medkern.backends.optional``; native CPU).
The projection is the backend's own ``rnn_input_projection`` where it has one (see ``_project``), with its
backward in ``_Projection``; under a tracer it is torch's addmm.

The recurrence is the custom op ``medkern::rnn_scan`` with a fake kernel and registered autograd; its
backward ``medkern::rnn_scan_backward`` is a custom op too (double backward is not supported and says so).
Variable lengths are masks: past its length a sequence keeps its state and emits zeros.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import _native, backends
from . import _alloc, _validate as v
from ._dispatch import route

__all__ = ["lstm", "gru", "lstm_cell", "gru_cell"]


def _kernels(t: Tensor):
    return backends.for_tensor("rnn", t)


def _gates(lstm: bool) -> int:
    return 4 if lstm else 3


# --- the recurrence, shared by the fast path and the custom ops ------------------------------------------

def _scan_forward(lstm, gx, w_hh, b_hh, w_hr, h0, c0, lengths, save=False):
    """Runs every direction d (w_hh[d], ...) over gx [T, B, D*G*H]. Returns out [T, B, D*P], h_n, c_n and
    what the backward pass needs (hs, cs, gates, hraw; empty tensors where there is nothing)."""
    T, B, _ = gx.shape
    D, P = len(w_hh), w_hh[0].shape[1]
    H = w_hh[0].shape[0] // _gates(lstm)
    proj = w_hr[0] is not None
    out = _alloc.empty((T, B, D * P), gx)
    hs = _alloc.empty((D, T + 1, B, P), gx)
    cs = _alloc.empty((D, T + 1, B, H), gx) if lstm else gx.new_empty(0)
    gates = _alloc.empty((D, T, B, 4 * H), gx) if save else gx.new_empty(0)
    hraw = _alloc.empty((D, T, B, H), gx) if save and proj else gx.new_empty(0)
    k = _kernels(gx)
    contiguous = lambda t: None if t is None else t.contiguous()  # noqa: E731 - kernels take dense weights
    w_hh, b_hh, w_hr = [contiguous(t) for t in w_hh], [contiguous(t) for t in b_hh], [contiguous(t) for t in w_hr]
    for d in range(D):
        first = T if d else 0  # the reverse direction reads slot T first
        hs[d, first] = h0[d]
        if lstm:
            cs[d, first] = c0[d]
        k.rnn_forward(lstm, gx, d * _gates(lstm) * H, w_hh[d], b_hh[d], w_hr[d], lengths, out, d * P, hs[d],
                      cs[d] if lstm else None, gates[d] if save else None, hraw[d] if save and proj else None, d == 1)
    last = [T, 0][:D]
    h_n = torch.stack([hs[d, last[d]] for d in range(D)])
    c_n = torch.stack([cs[d, last[d]] for d in range(D)]) if lstm else gx.new_empty(0)
    return out, h_n, c_n, hs, cs, gates, hraw


def _scan_backward(lstm, grad_out, grad_hn, grad_cn, w_hh, w_hr, lengths, hs, cs, gates, hraw):
    D, T1, B, P = hs.shape
    T = T1 - 1
    G, H = _gates(lstm), w_hh.shape[1] // _gates(lstm)
    proj = w_hr.numel() > 0
    grad_gx = _alloc.empty((T, B, D * G * H), hs)
    grad_gh = _alloc.empty((D, T, B, G * H), hs) if not lstm else None
    grad_hp = _alloc.empty((D, T, B, P), hs) if proj else None
    grad_h0 = _alloc.empty((D, B, P), hs)
    grad_c0 = _alloc.empty((D, B, H), hs) if lstm else None
    w_hh, w_hr = w_hh.contiguous(), w_hr.contiguous()
    k = _kernels(hs)
    for d in range(D):
        k.rnn_backward(lstm, grad_out, d * P, grad_hn[d], grad_cn[d] if lstm else None, w_hh[d],
                       w_hr[d] if proj else None, lengths, hs[d], cs[d] if lstm else None, gates[d],
                       hraw[d] if proj else None, grad_gx, d * G * H, grad_gh[d] if not lstm else None,
                       grad_hp[d] if proj else None, grad_h0[d], grad_c0[d] if lstm else None, d == 1)
    # Weight gradients: one product over all steps per direction. The state before step t is hs[t]
    # (forward) or hs[t + 1] (reverse).
    grad_w_hh = torch.empty_like(w_hh)
    grad_b_hh = hs.new_empty(0) if lstm else torch.empty((D, G * H), dtype=hs.dtype, device=hs.device)
    grad_w_hr = torch.empty_like(w_hr) if proj else hs.new_empty(0)
    for d in range(D):
        h_prev = (hs[d, 1:] if d else hs[d, :T]).reshape(T * B, P)
        g = (grad_gx.view(T * B, D * G * H)[:, d * G * H:(d + 1) * G * H] if lstm
             else grad_gh[d].view(T * B, G * H))
        _matmul(g.t(), h_prev, grad_w_hh[d])
        if not lstm:
            torch.sum(g, 0, out=grad_b_hh[d])
        if proj:
            _matmul(grad_hp[d].view(T * B, P).t(), hraw[d].view(T * B, H), grad_w_hr[d])
    return (grad_gx, grad_w_hh, grad_b_hh, grad_w_hr, grad_h0,
            grad_c0 if lstm else hs.new_empty(0))


def _scan_stacked(lstm, gx, w_hh, b_hh, w_hr, h0, c0, lengths, save):
    """``_scan_forward`` with every direction's weights stacked on dim 0, as the custom op takes them."""
    D = w_hh.shape[0]
    return _scan_forward(lstm, gx, _unstack(w_hh, D), _unstack(b_hh, D), _unstack(w_hr, D), h0, c0, lengths,
                         save=save)


def _unstack(t: Optional[Tensor], D: int) -> list:
    return [None] * D if t is None or t.numel() == 0 else [t[d] for d in range(D)]


@torch.library.custom_op("medkern::rnn_scan", mutates_args=())
def rnn_scan_op(lstm: bool, gx: Tensor, w_hh: Tensor, b_hh: Optional[Tensor], w_hr: Optional[Tensor], h0: Tensor,
                c0: Optional[Tensor], lengths: Optional[Tensor]
                ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The recurrence of one layer in all its directions (stacked on dim 0 of w_hh, b_hh, w_hr, h0, c0).
    Returns (out, h_n, c_n, hs, cs, gates, hraw); the last four are saved for the backward pass."""
    return _scan_stacked(lstm, gx, w_hh, b_hh, w_hr, h0, c0, lengths, save=True)


@torch.library.custom_op("medkern::rnn_scan_backward", mutates_args=())
def rnn_scan_backward_op(lstm: bool, grad_out: Tensor, grad_hn: Tensor, grad_cn: Tensor, w_hh: Tensor,
                         w_hr: Tensor, lengths: Optional[Tensor], hs: Tensor, cs: Tensor, gates: Tensor,
                         hraw: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(grad_gx, grad_w_hh, grad_b_hh, grad_w_hr, grad_h0, grad_c0); empty where the layer has none."""
    return _scan_backward(lstm, grad_out, grad_hn, grad_cn, w_hh, w_hr, lengths, hs, cs, gates, hraw)


@rnn_scan_op.register_fake
def _(lstm, gx, w_hh, b_hh, w_hr, h0, c0, lengths):
    T, B, _ = gx.shape
    D, GH, P = w_hh.shape
    H = GH // _gates(lstm)
    proj = w_hr is not None and w_hr.numel() > 0
    e = gx.new_empty
    return (e(T, B, D * P), e(D, B, P), e(D, B, H) if lstm else e(0), e(D, T + 1, B, P),
            e(D, T + 1, B, H) if lstm else e(0), e(D, T, B, 4 * H), e(D, T, B, H) if proj else e(0))


@rnn_scan_backward_op.register_fake
def _(lstm, grad_out, grad_hn, grad_cn, w_hh, w_hr, lengths, hs, cs, gates, hraw):
    D, T1, B, P = hs.shape
    GH = w_hh.shape[1]
    e = hs.new_empty
    return (e(T1 - 1, B, D * GH), e(w_hh.shape), e(0) if lstm else e(D, GH), e(w_hr.shape),
            e(D, B, P), e(D, B, GH // 4) if lstm else e(0))


def _scan_setup(ctx, inputs, output):
    lstm, _gx, w_hh, b_hh, w_hr, _h0, _c0, lengths = inputs
    _out, _hn, _cn, hs, cs, gates, hraw = output
    ctx.lstm = lstm
    ctx.has_b_hh = b_hh is not None
    ctx.save_for_backward(w_hh, w_hr if w_hr is not None else hs.new_empty(0), lengths, hs, cs, gates, hraw)
    ctx.mark_non_differentiable(hs, cs, gates, hraw)
    # Unused outputs get None, not zeros: materialising zero gradients of the saved activations would
    # fill tensors of T*B*4H elements only to ignore them.
    ctx.set_materialize_grads(False)


def _scan_grad(ctx, grad_out, grad_hn, grad_cn, *_saved_grads):
    w_hh, w_hr, lengths, hs, cs, gates, hraw = ctx.saved_tensors
    D, T1, B, P = hs.shape
    zeros = hs.new_zeros
    grad_out = zeros(T1 - 1, B, D * P) if grad_out is None else grad_out.contiguous()
    grad_hn = zeros(D, B, P) if grad_hn is None else grad_hn.contiguous()
    if ctx.lstm:
        grad_cn = zeros(D, B, cs.shape[-1]) if grad_cn is None else grad_cn.contiguous()
    else:
        grad_cn = hs.new_empty(0)
    g_gx, g_whh, g_bhh, g_whr, g_h0, g_c0 = rnn_scan_backward_op(ctx.lstm, grad_out, grad_hn, grad_cn, w_hh, w_hr,
                                                                 lengths, hs, cs, gates, hraw)
    return (None, g_gx, g_whh, g_bhh if ctx.has_b_hh else None, g_whr if w_hr.numel() else None, g_h0,
            g_c0 if ctx.lstm else None, None)


def _no_double_backward(ctx, *grads):
    raise RuntimeError("medkern rnn: double backward (gradients of gradients) through the recurrence is not "
                       "supported")


torch.library.register_autograd("medkern::rnn_scan", _scan_grad, setup_context=_scan_setup)
torch.library.register_autograd("medkern::rnn_scan_backward", _no_double_backward)


def rnn_scan_inference(lstm: bool, gx: Tensor, w_hh: Tensor, b_hh: Optional[Tensor], w_hr: Optional[Tensor],
                       h0: Tensor, c0: Optional[Tensor], lengths: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """``medkern::rnn_scan``'s (out, h_n, c_n) where no backward pass will follow (a compiled inference graph): the
    recurrence called directly, without the custom op's dispatch and without saving each step's gates."""
    return _scan_stacked(lstm, gx, w_hh, b_hh, w_hr, h0, c0, lengths, save=False)[:3]


def _scan_op(lstm, gx, w_hh, b_hh, w_hr, h0, c0, lengths):
    """``rnn_scan_op`` with ``_scan_forward``'s signature (per-direction lists, stacked here)."""
    stack = (lambda ts: ts[0].unsqueeze(0)) if len(w_hh) == 1 else torch.stack
    return rnn_scan_op(lstm, gx, stack(w_hh), None if b_hh[0] is None else stack(b_hh),
                       None if w_hr[0] is None else stack(w_hr), h0.contiguous(),
                       c0.contiguous() if lstm else None, lengths)


def _matmul(a, b, out=None):
    """a @ b (2-D, any strides) into ``out`` (contiguous) or a new tensor, by the backend's own product where
    it has one (native CPU): the recurrent layers' weight and wide input gradients are products over every
    step at once, which torch's (MKL) ran at 150-180 GFLOP/s here, a third of the FMA peak. Not
    differentiable: for backward passes that build no graph."""
    if out is None:
        out = _alloc.empty((a.shape[0], b.shape[1]), a)
    mm = backends.optional("rnn", a, "matmul")
    if mm is None:
        return torch.mm(a, b, out=out)
    mm(a, b, out)
    return out


def _project(x2, w_ih, bias):
    """gx = x W_ih^T + bias by the backend's own kernel where it has one (native CPU): at these shapes
    (input size 1 to 128, thousands of rows) torch's addmm first copies the broadcast bias into its
    output, then accumulates the product onto it (2.8 ms of a 20 ms LSTM training step at B64 T187 H64),
    and at input size 1 to 32 measured 5 to 40 times slower than the per-call cost of the packed kernel."""
    project = backends.optional("rnn", x2, "rnn_input_projection")
    if project is None:
        return _torch_project(x2, w_ih, bias)
    gx = _alloc.empty((x2.shape[0], w_ih.shape[0]), x2)
    project(x2.contiguous(), w_ih.contiguous(), None if bias is None else bias.contiguous(), gx)
    return gx


def _torch_project(x2, w_ih, bias):
    return torch.addmm(bias, x2, w_ih.t()) if bias is not None else torch.mm(x2, w_ih.t())


class _Projection(torch.autograd.Function):
    """The input projection in a plain eager call with gradients; the backward is three products over
    the gate gradients in their own layout."""

    @staticmethod
    def forward(ctx, x2, w_ih, bias):
        ctx.save_for_backward(x2, w_ih)
        ctx.has_bias = bias is not None
        return _project(x2, w_ih, bias)

    @staticmethod
    def backward(ctx, grad):
        x2, w_ih = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        need_b = need_b and ctx.has_bias
        # create_graph (grad mode on in a backward) needs differentiable products: torch's below.
        fused = None if torch.is_grad_enabled() else backends.optional("rnn", grad, "rnn_input_projection_backward")
        if fused is not None and x2.shape[1] <= _narrow_input():
            grad = grad.contiguous()
            grad_x = _alloc.empty(x2.shape, grad) if need_x else None
            grad_w = _alloc.empty(w_ih.shape, grad) if need_w else None
            grad_b = _alloc.empty((w_ih.shape[0],), grad) if need_b else None
            fused(x2.contiguous(), w_ih.contiguous(), grad, grad_x, grad_w, grad_b)
            return grad_x, grad_w, grad_b
        mm = torch.mm if torch.is_grad_enabled() else _matmul  # create_graph: torch's differentiable product
        grad_x = mm(grad, w_ih) if need_x else None
        grad_w = mm(grad.t(), x2) if need_w else None
        grad_b = grad.sum(0) if need_b else None
        return grad_x, grad_w, grad_b


def _narrow_input() -> int:
    """Up to this input size the projection's backward is one pass over the gate gradients (the backend's
    rnn_input_projection_backward); wider inputs make it real matrix products (_matmul). The compiled CPU
    module's own bound (``kNarrowInput`` in csrc/cpu/rnn.h, where the forward projection switches to its
    one-pass form), so the two always agree; 0 (never one pass) without a compiled module."""
    return 0 if _native._C is None else _native._C.rnn_narrow_input


# --- layers ----------------------------------------------------------------------------------------------

def _layer(lstm, x, dirs, h0, c0, lengths):
    """One layer: x [T, B, I]; dirs: per direction (w_ih, w_hh, b_ih, b_hh, w_hr). Returns (out, h_n, c_n).

    Each half is routed on its own tensors (``_dispatch.route``): the projection by the backend (eager
    twin ``_Projection``; torch's addmm under a tracer), the recurrence by the backend or, where a graph
    is needed, ``medkern::rnn_scan`` (which has no eager twin)."""
    T, B, I = x.shape
    D = len(dirs)
    w_ih = dirs[0][0] if D == 1 else torch.cat([d[0] for d in dirs])
    if dirs[0][2] is None:
        bias = None
    elif lstm:  # both biases add to the same pre-activations
        bias = torch.cat([d[2] + d[3] for d in dirs]) if D > 1 else dirs[0][2] + dirs[0][3]
    else:
        bias = torch.cat([d[2] for d in dirs]) if D > 1 else dirs[0][2]
    x2 = x.reshape(T * B, I)
    gx = route(_project, _Projection.apply, _torch_project, x2, w_ih, bias)(x2, w_ih, bias).view(T, B, -1)
    w_hh, b_hh, w_hr = [d[1] for d in dirs], [None if lstm else d[3] for d in dirs], [d[4] for d in dirs]
    scan = route(_scan_forward, _scan_op, _scan_op, gx, *w_hh, *b_hh, *w_hr, h0, c0)
    out, h_n, c_n, *_ = scan(lstm, gx, w_hh, b_hh, w_hr, h0, c0, lengths)
    return out, h_n, c_n


def _check_lengths(lengths, T, B, device, enforce_sorted):
    if lengths is None:
        return None
    if not isinstance(lengths, torch.Tensor):
        lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1 or lengths.numel() != B:
        raise ValueError(f"lengths: expected {B} values (one per batch element), got shape {tuple(lengths.shape)}")
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise TypeError(f"lengths: expected an integer tensor, got {lengths.dtype}")
    lo, hi = int(lengths.min()), int(lengths.max())
    if lo < 1 or hi > T:
        raise ValueError(f"lengths: every length must be in [1, {T}] (the sequence length), got [{lo}, {hi}]")
    if enforce_sorted and B > 1 and bool((lengths[1:] > lengths[:-1]).any()):
        raise ValueError("lengths: must be sorted in decreasing order, or pass enforce_sorted=False")
    return lengths.to(device=device, dtype=torch.int64).contiguous()


def _rnn(lstm, input, hx, params, has_biases, num_layers, dropout, training, bidirectional, batch_first, lengths,
         enforce_sorted):
    v.tensor(input, "input", (2, 3))
    if isinstance(params, torch.Tensor) or not isinstance(params, (list, tuple)):
        raise TypeError(f"params: expected a list of weight tensors, got {type(params).__name__}")
    num_layers = v.integer(num_layers, "num_layers", minimum=1)
    D = 2 if bidirectional else 1
    per = len(params) // (num_layers * D) if num_layers * D else 0
    base = 4 if has_biases else 2
    if per * num_layers * D != len(params) or per not in (base, base + (1 if lstm else 0)):
        raise ValueError(f"params: expected {num_layers * D} groups of {base} tensors"
                         f"{' (or ' + str(base + 1) + ' with a projection)' if lstm else ''}, got {len(params)}")
    proj = per == base + 1
    unbatched = input.dim() == 2
    x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if batch_first else input)
    T, B, I = x.shape
    if T == 0 or B == 0 or I == 0:
        raise ValueError(f"input: every size must be positive, got shape {tuple(input.shape)}")
    groups = []
    for layer in range(num_layers):
        dirs = []
        for d in range(D):
            g = params[(layer * D + d) * per:(layer * D + d + 1) * per]
            w_ih, w_hh = g[0], g[1]
            b_ih, b_hh = (g[2], g[3]) if has_biases else (None, None)
            w_hr = g[-1] if proj else None
            sfx = f"_l{layer}{'_reverse' if d else ''}"
            for name, t in (("weight_ih", w_ih), ("weight_hh", w_hh), ("bias_ih", b_ih), ("bias_hh", b_hh),
                            ("weight_hr", w_hr)):
                if t is not None:
                    v.tensor(t, name + sfx, (1,) if name.startswith("bias") else (2,))
                    v.same_device_dtype(input, "input", **{name + sfx: t})
            dirs.append((w_ih, w_hh, b_ih, b_hh, w_hr))
        groups.append(dirs)
    G = _gates(lstm)
    H = groups[0][0][1].shape[0] // G
    P = groups[0][0][4].shape[0] if proj else H
    in_size = I
    for layer, dirs in enumerate(groups):
        for d, (w_ih, w_hh, b_ih, b_hh, w_hr) in enumerate(dirs):
            sfx = f"_l{layer}{'_reverse' if d else ''}"
            if tuple(w_ih.shape) != (G * H, in_size):
                name = "input" if layer == 0 else f"weight_ih{sfx}"
                raise ValueError(f"{name}: expected input size {in_size} for weight_ih{sfx} of shape "
                                 f"{tuple(w_ih.shape)} (want ({G * H}, {in_size}))")
            if tuple(w_hh.shape) != (G * H, P):
                raise ValueError(f"weight_hh{sfx}: expected shape ({G * H}, {P}), got {tuple(w_hh.shape)}")
            for name, b in (("bias_ih", b_ih), ("bias_hh", b_hh)):
                if b is not None and tuple(b.shape) != (G * H,):
                    raise ValueError(f"{name}{sfx}: expected shape ({G * H},), got {tuple(b.shape)}")
            if w_hr is not None and tuple(w_hr.shape) != (P, H):
                raise ValueError(f"weight_hr{sfx}: expected shape ({P}, {H}), got {tuple(w_hr.shape)}")
        in_size = D * P
    h0, c0 = _initial_states(lstm, hx, input, unbatched, num_layers * D, B, P, H)
    lengths = _check_lengths(lengths, T, B, input.device, enforce_sorted)
    dropout = float(dropout)
    if not 0.0 <= dropout <= 1.0:
        raise ValueError(f"dropout: must be in [0, 1], got {dropout}")
    x = x.contiguous()
    h_n, c_n = [], []
    for layer, dirs in enumerate(groups):
        sl = slice(layer * D, (layer + 1) * D)
        x, hn, cn = _layer(lstm, x, dirs, h0[sl], c0[sl] if lstm else None, lengths)
        h_n.append(hn)
        c_n.append(cn)
        if dropout > 0 and training and layer + 1 < num_layers:
            x = F.dropout(x, dropout, training=True)
    out = x.squeeze(1) if unbatched else (x.transpose(0, 1) if batch_first else x)
    h_n = torch.cat(h_n) if num_layers > 1 else h_n[0]
    c_n = (torch.cat(c_n) if num_layers > 1 else c_n[0]) if lstm else None
    if unbatched:
        h_n = h_n.squeeze(1)
        c_n = c_n.squeeze(1) if lstm else None
    return out, h_n, c_n


def _initial_states(lstm, hx, input, unbatched, L, B, P, H):
    if lstm and hx is not None:
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError("hx: expected a tuple (h_0, c_0) for the LSTM")
        h0, c0 = hx
    else:
        h0, c0 = hx, None
    states = []
    for name, t, size in (("h_0", h0, P), ("c_0", c0, H)) if lstm else (("h_0", h0, P),):
        if t is None:
            t = torch.zeros(L, B, size, dtype=input.dtype, device=input.device)
        else:
            v.tensor(t, name, (2,) if unbatched else (3,))
            v.same_device_dtype(input, "input", **{name: t})
            want = (L, size) if unbatched else (L, B, size)
            if tuple(t.shape) != want:
                raise ValueError(f"{name}: expected shape {want}, got {tuple(t.shape)}")
            if unbatched:
                t = t.unsqueeze(1)
        states.append(t)
    return states[0], states[1] if lstm else None


def lstm(input: Tensor, hx, params, has_biases: bool = True, num_layers: int = 1, dropout: float = 0.0,
         training: bool = False, bidirectional: bool = False, batch_first: bool = False, lengths=None,
         enforce_sorted: bool = True):
    """LSTM over a padded sequence; ``params`` is torch's flat weight list (``module._flat_weights``):
    per layer and direction w_ih, w_hh, [b_ih, b_hh], [w_hr]. With ``lengths``, positions past a sequence's
    length give zeros and (h_n, c_n) are the states at each sequence's end, as with packed input.
    Returns (output, (h_n, c_n))."""
    out, h_n, c_n = _rnn(True, input, hx, params, has_biases, num_layers, dropout, training, bidirectional,
                         batch_first, lengths, enforce_sorted)
    return out, (h_n, c_n)


def gru(input: Tensor, hx, params, has_biases: bool = True, num_layers: int = 1, dropout: float = 0.0,
        training: bool = False, bidirectional: bool = False, batch_first: bool = False, lengths=None,
        enforce_sorted: bool = True):
    """GRU over a padded sequence (see :func:`lstm`). Returns (output, h_n)."""
    out, h_n, _ = _rnn(False, input, hx, params, has_biases, num_layers, dropout, training, bidirectional,
                       batch_first, lengths, enforce_sorted)
    return out, h_n


# --- cells -------------------------------------------------------------------------------------------------

def _cell(lstm, input, hx, cx, w_ih, w_hh, b_ih, b_hh):
    # A batched step that needs no graph, on a backend with the fused cell (the optional entry
    # rnn_cell_forward: native CPU), skips the Python validation: the binding checks every shape, dtype
    # and device itself, and its complaint (ValueError, or TypeError for an argument it cannot convert)
    # sends the call down the validated path below, which raises the proper error (or makes
    # non-contiguous operands contiguous). That is argument checking, not a capability probe.
    # route(True, False, False, ...): whether the fast path may run (route itself, not a wrapper: no frame).
    if hx is not None and route(True, False, False, input, hx, cx, w_ih, w_hh, b_ih, b_hh) and input.dim() == 2:
        fused = backends.optional("rnn", input, "rnn_cell_forward")
        if fused is not None:
            h_out = _alloc.empty_like(hx)
            c_out = _alloc.empty_like(hx) if lstm else None
            try:
                fused(lstm, input, hx, cx, w_ih, w_hh, b_ih, b_hh, h_out, c_out)
                return (h_out, c_out) if lstm else h_out
            except (ValueError, TypeError):
                pass
    G = _gates(lstm)
    if type(input) is not torch.Tensor or input.dtype not in v.FLOAT_DTYPES or input.dim() not in (1, 2):
        v.tensor(input, "input", (1, 2))
    for name, t in (("weight_ih", w_ih), ("weight_hh", w_hh)):
        if type(t) is not torch.Tensor or t.dim() != 2:
            v.tensor(t, name, (2,))
    unbatched = input.dim() == 1
    x = input.unsqueeze(0) if unbatched else input
    B, I = x.shape
    H = w_hh.shape[1] if isinstance(w_hh, torch.Tensor) and w_hh.dim() == 2 else -1
    if w_ih.shape != (G * H, I) or w_hh.shape != (G * H, H):
        raise ValueError(f"input: expected input size {w_ih.shape[1] if w_ih.dim() == 2 else '?'} and weights "
                         f"of shapes ({G}*hidden, input), ({G}*hidden, hidden); got input {tuple(input.shape)}, "
                         f"weight_ih {tuple(w_ih.shape)}, weight_hh {tuple(w_hh.shape)}")
    states = []
    for name, t in (("h_0", hx), ("c_0", cx))[:2 if lstm else 1]:
        if t is None:
            t = x.new_zeros(B, H)
        else:
            if type(t) is not torch.Tensor:
                v.tensor(t, name, (1, 2))
            if t.shape != ((H,) if unbatched else (B, H)):
                raise ValueError(f"{name}: expected shape {(H,) if unbatched else (B, H)}, got {tuple(t.shape)}")
            if unbatched:
                t = t.unsqueeze(0)
        states.append(t)
    h, c = states[0], states[1] if lstm else None
    for name, t in (("h_0", h), ("c_0", c), ("weight_ih", w_ih), ("weight_hh", w_hh), ("bias_ih", b_ih),
                    ("bias_hh", b_hh)):
        if t is not None and (t.dtype != x.dtype or t.device != x.device):
            v.same_device_dtype(x, "input", **{name: t})
    for name, b in (("bias_ih", b_ih), ("bias_hh", b_hh)):
        if b is not None and b.shape != (G * H,):
            raise ValueError(f"{name}: expected shape ({G * H},), got {tuple(b.shape)}")
    fast = route(True, False, False, x, h, c, w_ih, w_hh, b_ih, b_hh)
    fused = backends.optional("rnn", x, "rnn_cell_forward") if fast else None
    if fused is not None:
        h_out = _alloc.empty((B, H), x)
        c_out = _alloc.empty((B, H), x) if lstm else None
        fused(lstm, x.contiguous(), h.contiguous(), c.contiguous() if lstm else None, w_ih.contiguous(),
              w_hh.contiguous(), b_ih, b_hh, h_out, c_out)
        return _restore_cell(lstm, unbatched, h_out, c_out)
    # Elsewhere (a graph is needed, a tracer, a backend without the fused cell): a one-step sequence.
    dirs = [(w_ih, w_hh, b_ih, b_hh, None)]
    out, h_n, c_n = _layer(lstm, x.unsqueeze(0).contiguous(), dirs, h.unsqueeze(0), c.unsqueeze(0) if lstm else None,
                           None)
    return _restore_cell(lstm, unbatched, h_n[0], c_n[0] if lstm else None)


def _restore_cell(lstm, unbatched, h, c):
    if unbatched:
        h = h.squeeze(0)
        c = c.squeeze(0) if lstm else None
    return (h, c) if lstm else h


def lstm_cell(input: Tensor, hx=None, w_ih: Tensor = None, w_hh: Tensor = None, b_ih: Optional[Tensor] = None,
              b_hh: Optional[Tensor] = None):
    """One LSTM step: ``hx`` is (h, c) or None (zeros). Returns (h', c')."""
    h, c = (None, None) if hx is None else hx
    return _cell(True, input, h, c, w_ih, w_hh, b_ih, b_hh)


def gru_cell(input: Tensor, hx=None, w_ih: Tensor = None, w_hh: Tensor = None, b_ih: Optional[Tensor] = None,
             b_hh: Optional[Tensor] = None):
    """One GRU step: ``hx`` is h or None (zeros). Returns h'."""
    return _cell(False, input, hx, None, w_ih, w_hh, b_ih, b_hh)
