"""Recurrent family on medkern's compiled kernels (see backends/CONTRACT.md)."""
from __future__ import annotations

from ..._native import require_cpu
from ._interop import dl, module_and_stream

# The optional entries of backends/CONTRACT.md this module has, by device type: the CPU module's only.
OPTIONAL = {"cpu": frozenset({"rnn_cell_forward", "rnn_input_projection", "rnn_input_projection_backward",
                              "matmul"})}


def _opt(t):
    return None if t is None else dl(t)


def rnn_forward(lstm, gx, gx_offset, w_hh, b_hh, w_hr, lengths, out, out_offset, hs, cs, gates, hraw, reverse):
    mod, stream, ctx = module_and_stream(gx)
    with ctx:
        mod.rnn_forward(lstm, dl(gx), gx_offset, dl(w_hh), _opt(b_hh), _opt(w_hr), _opt(lengths), dl(out), out_offset,
                        dl(hs), _opt(cs), _opt(gates), _opt(hraw), reverse, stream)


def rnn_backward(lstm, grad_out, out_offset, grad_hn, grad_cn, w_hh, w_hr, lengths, hs, cs, gates, hraw, grad_gx,
                 gx_offset, grad_gh, grad_hp, grad_h0, grad_c0, reverse):
    mod, stream, ctx = module_and_stream(grad_gx)
    with ctx:
        mod.rnn_backward(lstm, dl(grad_out), out_offset, dl(grad_hn), _opt(grad_cn), dl(w_hh), _opt(w_hr),
                         _opt(lengths), dl(hs), _opt(cs), dl(gates), _opt(hraw), dl(grad_gx), gx_offset, _opt(grad_gh),
                         _opt(grad_hp), dl(grad_h0), _opt(grad_c0), reverse, stream)


def rnn_cell_forward(lstm, x, h, c, w_ih, w_hh, b_ih, b_hh, h_out, c_out):
    # The CPU module directly, without the stream lookup: a step at batch 1 is a few microseconds.
    require_cpu().rnn_cell_forward(lstm, dl(x), dl(h), _opt(c), dl(w_ih), dl(w_hh), _opt(b_ih), _opt(b_hh), dl(h_out),
                                   _opt(c_out))


def rnn_input_projection(x, w_ih, bias, out):
    require_cpu().rnn_input_projection(dl(x), dl(w_ih), _opt(bias), dl(out))


def rnn_input_projection_backward(x, w_ih, grad_gx, grad_x, grad_w, grad_b):
    require_cpu().rnn_input_projection_backward(dl(x), dl(w_ih), dl(grad_gx), _opt(grad_x), _opt(grad_w),
                                                _opt(grad_b))


def matmul(a, b, out):
    require_cpu().matmul(dl(a), dl(b), dl(out))
