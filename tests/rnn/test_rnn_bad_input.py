"""Bad input gets a clear exception naming the argument, from the ops and from the bindings."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import medkern
from medkern import _native


def _lstm(**kw):
    return medkern.nn.LSTM(3, 4, **kw)


def test_wrong_input_size():
    with pytest.raises(ValueError, match="input"):
        _lstm()(torch.randn(5, 2, 6))


def test_wrong_rank_and_dtype():
    with pytest.raises(ValueError, match="input"):
        _lstm()(torch.randn(5, 2, 3, 1))
    with pytest.raises(TypeError, match="input"):
        _lstm()(torch.randint(0, 3, (5, 2, 3)))
    with pytest.raises(TypeError, match="h_0"):
        _lstm()(torch.randn(5, 2, 3), (torch.zeros(1, 2, 4, dtype=torch.float64), torch.zeros(1, 2, 4)))


def test_h0_of_the_wrong_shape():
    with pytest.raises(ValueError, match="h_0"):
        _lstm()(torch.randn(5, 2, 3), (torch.zeros(1, 3, 4), torch.zeros(1, 2, 4)))
    with pytest.raises(ValueError, match="c_0"):
        _lstm()(torch.randn(5, 2, 3), (torch.zeros(1, 2, 4), torch.zeros(2, 2, 4)))
    with pytest.raises(ValueError, match="h_0"):
        medkern.nn.GRU(3, 4, bidirectional=True)(torch.randn(5, 2, 3), torch.zeros(1, 2, 4))
    with pytest.raises(TypeError, match="hx"):
        _lstm()(torch.randn(5, 2, 3), torch.zeros(1, 2, 4))


def test_lengths_out_of_range_or_unsorted():
    m = _lstm()
    x = torch.randn(5, 3, 3)
    for bad in ([5, 6, 1], [5, 0, 1]):
        with pytest.raises(ValueError, match="lengths"):
            medkern.ops.lstm(x, None, m._flat_weights, lengths=torch.tensor(bad))
    with pytest.raises(ValueError, match="enforce_sorted"):
        medkern.ops.lstm(x, None, m._flat_weights, lengths=torch.tensor([2, 5, 1]))
    medkern.ops.lstm(x, None, m._flat_weights, lengths=torch.tensor([2, 5, 1]), enforce_sorted=False)
    with pytest.raises(ValueError, match="lengths"):
        medkern.ops.lstm(x, None, m._flat_weights, lengths=torch.tensor([2, 5]))
    with pytest.raises(RuntimeError, match="enforce_sorted"):  # torch's own packing refuses it first
        m(pack_padded_sequence(x, torch.tensor([2, 5, 1])))


def test_cell_bad_inputs():
    cell = medkern.nn.LSTMCell(3, 4)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            with pytest.raises(ValueError, match="input"):
                cell(torch.randn(2, 5))
            with pytest.raises(ValueError, match="h_0"):
                cell(torch.randn(2, 3), (torch.zeros(3, 4), torch.zeros(2, 4)))
            with pytest.raises(TypeError, match="h_0"):
                cell(torch.randn(2, 3), (torch.zeros(2, 4, dtype=torch.float64), torch.zeros(2, 4)))
    with pytest.raises(TypeError, match="input"):
        medkern.nn.GRUCell(3, 4)("not a tensor")


def test_params_list_checked():
    with pytest.raises(ValueError, match="params"):
        medkern.ops.gru(torch.randn(2, 1, 3), None, [torch.randn(12, 3)], True, 1)
    with pytest.raises(TypeError, match="params"):
        medkern.ops.gru(torch.randn(2, 1, 3), None, torch.randn(12, 3))


def test_bindings_check_shapes():
    C = _native.require_cpu()
    T, B, H = 3, 2, 4
    gx, w = torch.randn(T, B, 4 * H), torch.randn(4 * H, H)
    out, hs, cs = torch.empty(T, B, H), torch.empty(T + 1, B, H), torch.empty(T + 1, B, H)
    with pytest.raises(ValueError, match="hs"):
        C.rnn_forward(True, gx, 0, w, None, None, None, out, 0, torch.empty(T, B, H), cs, None, None, False)
    with pytest.raises(ValueError, match="gx_offset"):
        C.rnn_forward(True, gx, 1, w, None, None, None, out, 0, hs, cs, None, None, False)
    with pytest.raises(ValueError, match="out"):
        C.rnn_forward(True, gx, 0, w, None, None, None, torch.empty(T, B, H - 1), 0, hs, cs, None, None, False)
    with pytest.raises(TypeError, match="w_hh"):
        C.rnn_forward(True, gx, 0, w.double(), None, None, None, out, 0, hs, cs, None, None, False)
    with pytest.raises(ValueError, match="lengths"):
        C.rnn_forward(True, gx, 0, w, None, None, torch.tensor([1, 2, 3]), out, 0, hs, cs, None, None, False)
    with pytest.raises(ValueError, match="gates"):
        C.rnn_backward(True, out, 0, torch.zeros(B, H), torch.zeros(B, H), w, None, None, hs, cs, None, None,
                       torch.empty_like(gx), 0, None, None, torch.empty(B, H), torch.empty(B, H), False)
    with pytest.raises(ValueError, match="w_hh"):
        C.rnn_cell_forward(True, torch.randn(1, 3), torch.randn(1, H), torch.randn(1, H), torch.randn(4 * H, 3),
                           torch.randn(4 * H, H + 1), None, None, torch.empty(1, H), torch.empty(1, H))
