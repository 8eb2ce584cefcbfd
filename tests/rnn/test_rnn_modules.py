"""medkern.nn.LSTM / GRU / LSTMCell / GRUCell against torch's modules in float64 over the option grid
(layers x directions x batch_first x proj_size x packed or padded), on every backend with recurrent
kernels: outputs, final states and every gradient. Outputs are poisoned (MEDKERN_POISON), so an element
a kernel leaves unwritten fails."""
import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import medkern
from conftest import TOL, rel_err

from .cases import grads, module_pair, rnn_backend_devices


@pytest.fixture(params=rnn_backend_devices())
def device(request):
    name, dev = request.param
    with medkern.backends.use(name):
        yield dev


def _flat(out):
    """(output, h_n[, c_n]) as a flat tuple of tensors."""
    y, state = out
    y = y.data if isinstance(y, torch.nn.utils.rnn.PackedSequence) else y
    return (y, *state) if isinstance(state, tuple) else (y, state)


def _compare(ref, ours, x, hx, dtype=torch.float64):
    want, got = _flat(ref(x, hx)), _flat(ours(x, hx))
    tol = TOL[dtype] * 100
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert rel_err(g, w) < tol
    leaves = [t for t in ([x.data if isinstance(x, torch.nn.utils.rnn.PackedSequence) else x] +
                          list(hx if isinstance(hx, tuple) else [hx])) if t is not None and t.requires_grad]
    torch.manual_seed(1)
    weights = [torch.randn_like(w) for w in want]
    g_want = grads(want, leaves + list(ref.parameters()), weights)
    g_got = grads(got, leaves + list(ours.parameters()), weights)
    for g, w in zip(g_got, g_want):
        assert rel_err(g, w) < tol


GRID = [(kind, layers, bi, bf, proj) for kind, layers, bi, bf, proj in
        itertools.product(["lstm", "gru"], [1, 2], [False, True], [False, True], [0, 3])
        if not (kind == "gru" and proj)]


@pytest.mark.parametrize("kind, layers, bi, bf, proj", GRID, ids=lambda v: str(v))
def test_sequence_matches_torch(device, kind, layers, bi, bf, proj):
    kw = dict(num_layers=layers, bidirectional=bi, batch_first=bf, **({"proj_size": proj} if proj else {}))
    ref, ours = module_pair(kind, 5, 7, device=device, **kw)
    T, B = 6, 3
    x = torch.randn(*((B, T) if bf else (T, B)), 5, dtype=torch.float64, device=device, requires_grad=True)
    D = 2 if bi else 1
    h0 = torch.randn(layers * D, B, proj or 7, dtype=torch.float64, device=device, requires_grad=True)
    c0 = torch.randn(layers * D, B, 7, dtype=torch.float64, device=device, requires_grad=True)
    _compare(ref, ours, x, (h0, c0) if kind == "lstm" else h0)
    _compare(ref, ours, x, None)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("input_size", [1, 3, 12])  # the projection's one-pass backward (<= 8), torch's GEMM
@pytest.mark.parametrize("bias", [True, False])
def test_weight_gradients_without_input_gradient(device, kind, input_size, bias):
    """Training on data: the input wants no gradient, the weights and biases do."""
    ref, ours = module_pair(kind, input_size, 7, bias=bias, device=device)
    x = torch.randn(9, 4, input_size, dtype=torch.float64, device=device)
    _compare(ref, ours, x, None)


@pytest.mark.parametrize("kind, proj", [("lstm", 0), ("lstm", 3), ("gru", 0)])
@pytest.mark.parametrize("B", [29, 64])
def test_batch_split_over_threads(device, kind, proj, B):
    """Batches of several register tiles run one contiguous chunk of rows per thread (29: 14 | 15 rows)."""
    ref, ours = module_pair(kind, 4, 9, device=device, bidirectional=True, **({"proj_size": proj} if proj else {}))
    x = torch.randn(5, B, 4, dtype=torch.float64, device=device, requires_grad=True)
    h0 = torch.randn(2, B, proj or 9, dtype=torch.float64, device=device, requires_grad=True)
    c0 = torch.randn(2, B, 9, dtype=torch.float64, device=device, requires_grad=True)
    _compare(ref, ours, x, (h0, c0) if kind == "lstm" else h0)


@pytest.mark.parametrize("kind, layers, bi, proj", [("lstm", 1, False, 0), ("lstm", 2, True, 0), ("lstm", 2, True, 2),
                                                    ("gru", 1, True, 0), ("gru", 2, False, 0)], ids=str)
@pytest.mark.parametrize("sort", [True, False], ids=["sorted", "unsorted"])
def test_packed_sequence_matches_torch(device, kind, layers, bi, proj, sort):
    kw = dict(num_layers=layers, bidirectional=bi, **({"proj_size": proj} if proj else {}))
    ref, ours = module_pair(kind, 4, 5, device=device, **kw)
    lengths = torch.tensor([7, 5, 5, 2, 1]) if sort else torch.tensor([2, 7, 1, 5, 3])
    x = torch.randn(7, 5, 4, dtype=torch.float64, device=device, requires_grad=True)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=sort)
    D = 2 if bi else 1
    h0 = torch.randn(layers * D, 5, proj or 5, dtype=torch.float64, device=device, requires_grad=True)
    c0 = torch.randn(layers * D, 5, 5, dtype=torch.float64, device=device, requires_grad=True)
    hx = (h0, c0) if kind == "lstm" else h0
    got = ours(packed, hx)
    want = ref(packed, hx)
    assert torch.equal(got[0].batch_sizes, want[0].batch_sizes)
    for a, b in (("sorted_indices", "sorted_indices"), ("unsorted_indices", "unsorted_indices")):
        ga, wb = getattr(got[0], a), getattr(want[0], b)
        assert (ga is None and wb is None) or torch.equal(ga, wb)
    _compare(ref, ours, packed, hx)


def test_lengths_argument_zeroes_the_padding(device):
    ref, ours = module_pair("lstm", 3, 4, device=device, bidirectional=True)
    x = torch.randn(6, 3, 3, dtype=torch.float64, device=device)
    lengths = torch.tensor([6, 4, 1])
    y, (h, c) = medkern.ops.lstm(x, None, ours._flat_weights, True, 1, 0.0, False, True, False, lengths=lengths)
    want, (wh, wc) = ref(pack_padded_sequence(x, lengths))
    want, _ = torch.nn.utils.rnn.pad_packed_sequence(want, total_length=6)
    assert rel_err(y, want) < 1e-12 and rel_err(h, wh) < 1e-12 and rel_err(c, wc) < 1e-12
    assert (y[1:, 2] == 0).all()


@pytest.mark.parametrize("kind", ["lstm_cell", "gru_cell"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("B", [1, 5])
# (input, hidden): (40, 150) has weights enough for the native step to split its hidden units over the
# threads (at whole vectors, so one chunk ends in a part vector).
@pytest.mark.parametrize("I, H", [(6, 9), (40, 150)])
def test_cells_match_torch(device, kind, bias, B, I, H):
    ref, ours = module_pair(kind, I, H, bias=bias, device=device)
    x = torch.randn(B, I, dtype=torch.float64, device=device, requires_grad=True)
    h = torch.randn(B, H, dtype=torch.float64, device=device, requires_grad=True)
    c = torch.randn(B, H, dtype=torch.float64, device=device, requires_grad=True)
    hx = (h, c) if kind == "lstm_cell" else h
    with torch.no_grad():  # the fast path
        for g, w in zip(_as_tuple(ours(x, hx)), _as_tuple(ref(x, hx))):
            assert rel_err(g, w) < 1e-12
        for g, w in zip(_as_tuple(ours(x[0], tuple(t[0] for t in hx) if kind == "lstm_cell" else h[0])),
                        _as_tuple(ref(x[0], tuple(t[0] for t in hx) if kind == "lstm_cell" else h[0]))):
            assert rel_err(g, w) < 1e-12  # unbatched
        for g, w in zip(_as_tuple(ours(x)), _as_tuple(ref(x))):
            assert rel_err(g, w) < 1e-12  # no state: zeros
    got, want = _as_tuple(ours(x, hx)), _as_tuple(ref(x, hx))
    torch.manual_seed(2)
    weights = [torch.randn_like(w) for w in want]
    leaves = [x, h] + ([c] if kind == "lstm_cell" else []) + list(ref.parameters())
    mine = [x, h] + ([c] if kind == "lstm_cell" else []) + list(ours.parameters())
    for g, w in zip(grads(got, mine, weights), grads(want, leaves, weights)):
        assert rel_err(g, w) < 1e-12


def _as_tuple(t):
    return t if isinstance(t, tuple) else (t,)


class _Doubled(torch.nn.Module):
    def forward(self, w):
        return 2 * w


@pytest.mark.parametrize("kind", ["lstm_cell", "gru_cell"])
def test_parametrized_cell_weights_are_used(device, kind):
    """A parametrised weight is computed, not stored in ``_parameters``: the cell must use its value."""
    from torch.nn.utils import parametrize
    ref, ours = module_pair(kind, 5, 7, bias=True, device=device)
    for m in (ref, ours):
        parametrize.register_parametrization(m, "weight_hh", _Doubled())
    x = torch.randn(3, 5, dtype=torch.float64, device=device)
    h = torch.randn(3, 7, dtype=torch.float64, device=device)
    hx = (h, torch.randn_like(h)) if kind == "lstm_cell" else h
    with torch.no_grad():
        for g, w in zip(_as_tuple(ours(x, hx)), _as_tuple(ref(x, hx))):
            assert rel_err(g, w) < 1e-12


@pytest.mark.parametrize("kind", ["lstm_cell", "gru_cell"])
@pytest.mark.parametrize("B", [1, 3])
def test_float32_cell_step_matches_float64_torch(device, kind, B):
    """The float32 no-grad step, on a cell large enough to split its hidden units over the threads."""
    ref, ours = module_pair(kind, 33, 150, device=device)
    ours.float()
    x = torch.randn(B, 33, dtype=torch.float64, device=device)
    h = torch.randn(B, 150, dtype=torch.float64, device=device)
    hx = (h, torch.randn_like(h)) if kind == "lstm_cell" else h
    with torch.no_grad():
        want = _as_tuple(ref(x, hx))
        got = _as_tuple(ours(x.float(), tuple(t.float() for t in hx) if kind == "lstm_cell" else h.float()))
    for g, w in zip(got, want):
        assert g.dtype == torch.float32 and rel_err(g, w) < 1e-5


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_float32_matches_float64_torch(device, kind):
    ref, ours = module_pair(kind, 3, 16, device=device, num_layers=2, bidirectional=True)
    ours.float()
    x = torch.randn(40, 4, 3, dtype=torch.float64, device=device)
    want = _flat(ref(x))
    got = _flat(ours(x.float()))
    for g, w in zip(got, want):
        assert rel_err(g, w) < 1e-5
    with torch.no_grad():
        for g, w in zip(_flat(ours(x.float())), want):
            assert rel_err(g, w) < 1e-5


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_unbatched_and_state_dict_roundtrip(device, kind):
    ref, ours = module_pair(kind, 3, 4, device=device, num_layers=2)
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(5, 3, dtype=torch.float64, device=device)
    for g, w in zip(_flat(ours(x)), _flat(ref(x))):
        assert g.shape == w.shape and rel_err(g, w) < 1e-12


def test_dropout_between_layers(device):
    ref, ours = module_pair("lstm", 3, 8, device=device, num_layers=3, dropout=0.5)
    x = torch.randn(5, 2, 3, dtype=torch.float64, device=device)
    ours.eval()
    ref.eval()
    assert rel_err(ours(x)[0], ref(x)[0]) < 1e-12  # no dropout in eval mode
    ours.train()
    torch.manual_seed(0)
    a = ours(x)[0]
    torch.manual_seed(1)
    b = ours(x)[0]
    assert not torch.allclose(a, b)  # dropout is drawn in training mode


def test_patch_swaps_recurrent_layers():
    model = torch.nn.Sequential(torch.nn.LSTM(3, 4), torch.nn.GRU(3, 4), torch.nn.LSTMCell(3, 4),
                                torch.nn.GRUCell(3, 4))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    medkern.patch(model)
    assert [type(m) for m in model] == [medkern.nn.LSTM, medkern.nn.GRU, medkern.nn.LSTMCell, medkern.nn.GRUCell]
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_non_contiguous_weights(device):
    ref, _ = module_pair("lstm", 3, 4, device=device, proj_size=2)
    ws = [w.detach().t().contiguous().t().requires_grad_() for w in ref._flat_weights]  # same values, transposed layout
    x = torch.randn(5, 2, 3, dtype=torch.float64, device=device)
    want = ref(x)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            y, (h, c) = medkern.ops.lstm(x, None, ws)
        assert rel_err(y, want[0]) < 1e-12 and rel_err(h, want[1][0]) < 1e-12 and rel_err(c, want[1][1]) < 1e-12
