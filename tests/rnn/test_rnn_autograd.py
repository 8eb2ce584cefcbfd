"""gradcheck of the recurrent ops on small float64 shapes (every backend with recurrent kernels),
torch.compile(fullgraph=True) of a model using them, and the clear refusal of double backward."""
import pytest
import torch

import medkern

from .cases import module_pair, rnn_backend_devices


@pytest.fixture(params=rnn_backend_devices())
def device(request):
    name, dev = request.param
    with medkern.backends.use(name):
        yield dev


@pytest.mark.parametrize("kind, kw", [("lstm", {}), ("lstm", {"bidirectional": True, "proj_size": 2}),
                                      ("gru", {"bidirectional": True}), ("gru", {"bias": False})], ids=str)
def test_gradcheck_sequence(device, kind, kw):
    _, m = module_pair(kind, 2, 3, device=device, **kw)
    x = torch.randn(4, 2, 2, dtype=torch.float64, device=device, requires_grad=True)
    lengths = torch.tensor([4, 2])
    params = list(m.parameters())
    fn = medkern.ops.lstm if kind == "lstm" else medkern.ops.gru

    def f(x, *ps):
        y, state = fn(x, None, list(ps), m.bias, 1, 0.0, False, m.bidirectional, False, lengths=lengths)
        return (y, *state) if isinstance(state, tuple) else (y, state)
    assert torch.autograd.gradcheck(f, (x, *params))


@pytest.mark.parametrize("kind", ["lstm_cell", "gru_cell"])
def test_gradcheck_cell(device, kind):
    _, m = module_pair(kind, 2, 3, device=device)
    x = torch.randn(2, 2, dtype=torch.float64, device=device, requires_grad=True)
    h = torch.randn(2, 3, dtype=torch.float64, device=device, requires_grad=True)
    c = torch.randn(2, 3, dtype=torch.float64, device=device, requires_grad=True)
    op = medkern.ops.lstm_cell if kind == "lstm_cell" else medkern.ops.gru_cell
    if kind == "lstm_cell":
        assert torch.autograd.gradcheck(lambda x, h, c, *p: op(x, (h, c), *p), (x, h, c, *m.parameters()))
    else:
        assert torch.autograd.gradcheck(lambda x, h, *p: op(x, h, *p), (x, h, *m.parameters()))


def test_double_backward_is_refused():
    _, m = module_pair("gru", 2, 3)
    x = torch.randn(3, 1, 2, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(m(x)[0].sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        g.sum().backward()


def test_torch_compile_fullgraph():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = medkern.nn.LSTM(3, 5, num_layers=2, batch_first=True)
            self.gru = medkern.nn.GRU(5, 4, bidirectional=True)
            self.cell = medkern.nn.LSTMCell(8, 6)

        def forward(self, x):
            y, _ = self.lstm(x)
            y, h = self.gru(y.transpose(0, 1))
            return self.cell(y[-1])[0].sum() + h.sum()

    torch.manual_seed(0)
    net = Net()
    x = torch.randn(2, 6, 3, requires_grad=True)
    eager = net(x)
    # Dynamo refuses every nn.RNNBase subclass unless told otherwise; medkern's modules are traced as plain
    # Python around custom ops, so the flag is all they need.
    with torch._dynamo.config.patch(allow_rnn=True):
        out = torch.compile(net, fullgraph=True, backend="aot_eager")(x)
    assert torch.allclose(out, eager, rtol=1e-5, atol=1e-6)
    (g_eager,) = torch.autograd.grad(eager, x)
    (g_compiled,) = torch.autograd.grad(out, x)
    assert torch.allclose(g_compiled, g_eager, rtol=1e-4, atol=1e-6)


def test_opcheck_rnn_scan():
    T, B, H = 3, 2, 4
    gx = torch.randn(T, B, 4 * H, dtype=torch.float64, requires_grad=True)
    w_hh = torch.randn(1, 4 * H, H, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, B, H, dtype=torch.float64)
    c0 = torch.randn(1, B, H, dtype=torch.float64)
    torch.library.opcheck(torch.ops.medkern.rnn_scan.default, (True, gx, w_hh, None, None, h0, c0, None),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))
