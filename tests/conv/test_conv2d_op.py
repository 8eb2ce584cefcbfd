"""medkern.ops.conv2d as a PyTorch user meets it: torch's semantics, autograd to second order, the
custom-op contract (opcheck), torch.compile without graph breaks, and the no-grad fast path."""
import pytest
import torch
import torch.nn.functional as F

import medkern
from conftest import ROUTES, TOL, backend_devices, rel_err, route_context

from .cases import CASES, case as named


@pytest.fixture(params=backend_devices())
def backend(request):
    name, device = request.param
    with medkern.backends.use(name):
        yield device


def _torch_args(case):
    """The same call in torch's public form, or None if torch's padding argument cannot express it."""
    if any(case.extra):
        if case.stride != (1, 1):
            return None
        total = [d * (k - 1) for d, k in zip(case.dilation, (case.R, case.S))]
        if [t // 2 for t in total] != list(case.padding) or [t - t // 2 - p for t, p in zip(total, case.padding)] != list(case.extra):
            return None
        padding = "same"
    else:
        padding = case.padding
    return dict(stride=case.stride, padding=padding, dilation=case.dilation, groups=case.groups)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id())
def test_conv2d_matches_torch_forward_and_backward(backend, case, dtype):
    kwargs = _torch_args(case)
    if kwargs is None:
        pytest.skip("geometry not expressible through torch's padding argument")
    x, w, b, dy = case.tensors(dtype, backend)
    inputs = [t.requires_grad_() for t in (x, w, b) if t is not None]
    y = medkern.ops.conv2d(x, w, b, **kwargs)
    grads = torch.autograd.grad(y, inputs, dy)
    ref_inputs = [t.detach().double().cpu().requires_grad_() for t in inputs]
    rx, rw, *rb = ref_inputs
    y_ref = F.conv2d(rx, rw, rb[0] if rb else None, **kwargs)
    grads_ref = torch.autograd.grad(y_ref, ref_inputs, dy.double().cpu())
    assert y.dtype == dtype and y.device.type == backend
    assert rel_err(y, y_ref) < TOL[dtype]
    for g, r in zip(grads, grads_ref):
        assert rel_err(g, r) < TOL[dtype]


GRADCHECK_CASES = ["basic_3x3", "all_ones", "pointwise_40_outputs", "dilated_rows_extra_pad",
                   "kernel_taller_than_input", "padding_past_kernel_reach"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", [named(n) for n in GRADCHECK_CASES], ids=lambda c: c.id())
def test_gradcheck_and_gradgradcheck(backend, case, route):
    kwargs = _torch_args(case)
    if kwargs is None:
        pytest.skip("geometry not expressible through torch's padding argument")
    x, w, b, _ = case.tensors(torch.float64, backend)
    inputs = tuple(t.requires_grad_() for t in (x, w, b) if t is not None)

    def f(*args):
        with route_context(route):
            return medkern.ops.conv2d(args[0], args[1], args[2] if len(args) > 2 else None, **kwargs)

    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


def test_padding_forms_and_unbatched_input():
    x = torch.randn(3, 10, 11, dtype=torch.float64)
    w = torch.randn(4, 3, 4, 3, dtype=torch.float64)
    for padding in (0, 2, (1, 2), "same", "valid"):
        got = medkern.ops.conv2d(x, w, padding=padding)
        assert got.shape == F.conv2d(x, w, padding=padding).shape
        assert rel_err(got, F.conv2d(x, w, padding=padding)) < 1e-12


@pytest.mark.parametrize("layout", ["transposed", "channels_last", "sliced", "expanded"])
def test_non_contiguous_inputs(layout):
    g = torch.Generator().manual_seed(3)
    base = torch.randn(2, 4, 12, 14, generator=g, dtype=torch.float64)
    w = torch.randn(6, 4, 3, 3, generator=g, dtype=torch.float64)
    x = {"transposed": base.transpose(2, 3), "channels_last": base.to(memory_format=torch.channels_last),
         "sliced": base[:, :, ::2, 1::3], "expanded": base[:1, :, :1, :].expand(3, 4, 5, 14)}[layout]
    wt = w.transpose(2, 3) if layout == "transposed" else w
    assert not x.is_contiguous()
    assert rel_err(medkern.ops.conv2d(x, wt, padding=1), F.conv2d(x, wt, padding=1)) < 1e-12


def test_empty_batch():
    x = torch.randn(0, 3, 8, 8, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    y = medkern.ops.conv2d(x, w)
    assert y.shape == (0, 4, 6, 6)
    gx, gw = torch.autograd.grad(y.sum(), (x, w))
    assert gx.shape == x.shape and torch.equal(gw, torch.zeros_like(w))


def _opcheck_samples():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 7, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(2, 6, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    geom = ([2, 1], [1, 0, 1, 1], [1, 2], 2)
    ops = torch.ops.medkern
    return [
        (ops.conv2d.default, (x, w, b, *geom)),
        (ops.conv2d.default, (x, w, None, *geom)),
        (ops.conv2d_grad_input.default, (dy, w, list(x.shape), *geom)),
        (ops.conv2d_grad_weight.default, (dy, x, list(w.shape), *geom)),
        (ops.conv2d_grad_bias.default, (dy,)),
    ]


@pytest.mark.parametrize("sample", range(5))
def test_opcheck(sample):
    op, args = _opcheck_samples()[sample]
    torch.library.opcheck(op, args)


def test_torch_compile_fullgraph():
    torch._dynamo.reset()
    model = medkern.patch(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                              torch.nn.Conv2d(8, 4, 3, stride=2, padding="valid")))
    x = torch.randn(2, 3, 16, 16)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    y = compiled(x)
    assert rel_err(y, model(x)) < 1e-6
    y.sum().backward()
    assert model[0].weight.grad is not None


def test_eager_calls_skip_the_dispatcher_and_tracers_get_the_custom_op(monkeypatch):
    from medkern.ops import conv as conv_mod

    calls = []
    real = conv_mod.conv2d_op
    monkeypatch.setitem(conv_mod._CUSTOM, 2, conv_mod._CUSTOM[2]._replace(forward=lambda *a: calls.append(1) or real(*a)))
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3, requires_grad=True)
    with torch.no_grad():
        y_fast = medkern.ops.conv2d(x, w)
    y_eager = medkern.ops.conv2d(x, w)
    assert calls == [] and y_eager.requires_grad
    assert type(y_eager.grad_fn).__name__.startswith("_ConvFunction")
    with route_context("custom_op"):
        y_op = medkern.ops.conv2d(x, w)
    assert calls == [1] and y_op.requires_grad
    assert torch.equal(y_fast, y_eager.detach()) and torch.equal(y_fast, y_op.detach())


def test_backend_selection_changes_the_kernel(monkeypatch):
    x, w = torch.randn(1, 2, 5, 5, dtype=torch.float64), torch.randn(3, 2, 3, 3, dtype=torch.float64)
    ref = medkern.backends.family("conv", "cpu", "reference")
    hits = []
    monkeypatch.setattr(ref, "conv2d_forward", lambda *a: hits.append(1) or a[3].zero_())
    with medkern.backends.use("reference"):
        assert torch.equal(medkern.ops.conv2d(x, w), torch.zeros(1, 3, 3, 3, dtype=torch.float64))
    assert hits == [1]
    assert rel_err(medkern.ops.conv2d(x, w), F.conv2d(x, w)) < 1e-12


@pytest.mark.parametrize("route", ROUTES)
def test_backward_computes_only_the_gradients_the_pass_reaches(monkeypatch, route):
    """autograd.grad(out, x) (a gradient penalty's first pass) needs no weight gradient; the penalty's own
    backward, which reaches the weights through the grad-input map, still gets them right. Both routes: the
    eager autograd.Functions and the custom ops (taken under a dispatch mode)."""
    kernels = medkern.backends.family("conv", "cpu")
    calls = []
    real = kernels.conv2d_grad_weight
    monkeypatch.setattr(kernels, "conv2d_grad_weight", lambda *a: calls.append(1) or real(*a))
    torch.manual_seed(0)
    ref = torch.nn.Conv2d(3, 5, 3, stride=2, padding=1).double()
    ours = medkern.nn.Conv2d(3, 5, 3, stride=2, padding=1).double()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64, requires_grad=True)
    grads = []
    for m in (ours, ref):
        with route_context(route if m is ours else "eager"):
            (gx,) = torch.autograd.grad(torch.tanh(m(x)).sum(), x, create_graph=True)
            if m is ours:
                assert calls == []
            (gx ** 2).sum().backward()
        grads.append((gx.detach(), m.weight.grad, m.bias.grad))
    assert calls, "the second pass needs the weight gradient"
    for g, w in zip(*grads):
        assert rel_err(g, w) < 1e-12
