"""conv1d, conv_transpose2d and the fused conv2d epilogue as a PyTorch user meets them: torch's results in
float64 on every backend (outputs poisoned through MEDKERN_POISON), derivatives to second order, the
custom-op path under torch.compile, and clear errors for bad arguments."""
import random

import pytest
import torch
import torch.nn.functional as F

import medkern
from conftest import ROUTES, TOL, backend_devices, rel_err, route_context


@pytest.fixture(params=backend_devices())
def backend(request):
    name, device = request.param
    with medkern.backends.use(name):
        yield device


def _check_against_torch(fn, ref, tensors, dtype, device):
    """Output and gradients of fn(x, w, b) against ref(x, w, b) evaluated in float64 on the CPU; a bias of
    None stays None and gets no gradient."""
    ins = [t.to(dtype=dtype, device=device).requires_grad_() for t in tensors if t is not None]
    if tensors[-1] is None:
        fn, ref = (lambda x, w, f=fn: f(x, w, None)), (lambda x, w, f=ref: f(x, w, None))
    y = fn(*ins)
    dy = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad(y, ins, dy.to(dtype=dtype, device=device))
    ref_ins = [t.detach().double().cpu().requires_grad_() for t in ins]
    y_ref = ref(*ref_ins)
    grads_ref = torch.autograd.grad(y_ref, ref_ins, dy)
    assert y.shape == y_ref.shape and y.dtype == dtype and y.device.type == device
    assert rel_err(y, y_ref) < TOL[dtype], "output"
    for i, (g, r) in enumerate(zip(grads, grads_ref)):
        assert rel_err(g, r) < TOL[dtype], f"gradient {i}"


# --- conv1d ------------------------------------------------------------------------------------------

def _conv1d_cases():
    cases = [dict(N=2, C=3, L=17, K=5, S=3, stride=1, padding=1, dilation=1, groups=1, bias=True),
             dict(N=1, C=4, L=9, K=6, S=4, stride=2, padding=0, dilation=2, groups=2, bias=False),
             dict(N=3, C=6, L=31, K=6, S=7, stride=1, padding=3, dilation=1, groups=6, bias=True),  # depthwise
             dict(N=2, C=32, L=40, K=33, S=7, stride=1, padding=3, dilation=1, groups=1, bias=True),  # 2 KC blocks
             dict(N=2, C=3, L=10, K=4, S=4, stride=1, padding="same", dilation=1, groups=1, bias=True),
             dict(N=2, C=3, L=12, K=4, S=3, stride=3, padding="valid", dilation=1, groups=1, bias=True)]
    rng = random.Random(5)
    for _ in range(4):
        g = rng.choice([1, 2])
        S, d = rng.randint(1, 5), rng.randint(1, 2)
        cases.append(dict(N=rng.randint(1, 3), C=g * rng.randint(1, 4), L=rng.randint(d * (S - 1) + 1, 29),
                          K=g * rng.randint(1, 5), S=S, stride=rng.randint(1, 3), padding=rng.randint(0, 2),
                          dilation=d, groups=g, bias=rng.random() < 0.7))
    return cases


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", _conv1d_cases(), ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_conv1d_matches_torch(backend, case, dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(case["N"], case["C"], case["L"], generator=g, dtype=torch.float64)
    w = torch.randn(case["K"], case["C"] // case["groups"], case["S"], generator=g, dtype=torch.float64)
    b = torch.randn(case["K"], generator=g, dtype=torch.float64) if case["bias"] else None
    kw = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"], groups=case["groups"])
    _check_against_torch(lambda x, w, b: medkern.ops.conv1d(x, w, b, **kw),
                         lambda x, w, b: F.conv1d(x, w, b, **kw), (x, w, b), dtype, backend)


def test_conv1d_gradgradcheck_and_unbatched():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 9, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    f = lambda x, w, b: medkern.ops.conv1d(x, w, b, stride=2, padding=2, dilation=2, groups=2)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))
    with torch.no_grad():
        assert rel_err(medkern.ops.conv1d(x[0], w, b, groups=2), F.conv1d(x[0], w, b, groups=2)) < 1e-12


# --- conv_transpose2d --------------------------------------------------------------------------------

def _transpose_cases():
    cases = [dict(N=2, C=4, H=5, W=6, Cout=3, R=3, S=3, stride=(2, 2), padding=(1, 1), output_padding=(1, 1),
                  dilation=(1, 1), groups=1, bias=True),  # the DCGAN upsampling block's shape
             dict(N=2, C=8, H=4, W=4, Cout=4, R=4, S=4, stride=(2, 2), padding=(1, 1), output_padding=(0, 0),
                  dilation=(1, 1), groups=2, bias=False),
             dict(N=1, C=3, H=3, W=5, Cout=5, R=2, S=3, stride=(3, 1), padding=(0, 1), output_padding=(2, 0),
                  dilation=(1, 2), groups=1, bias=True),
             dict(N=2, C=4, H=4, W=3, Cout=4, R=3, S=2, stride=(1, 2), padding=(2, 0), output_padding=(1, 1),
                  dilation=(3, 1), groups=4, bias=True),  # output_padding >= stride, < dilation
             dict(N=1, C=3, H=1, W=1, Cout=6, R=4, S=4, stride=(1, 1), padding=(0, 0), output_padding=(0, 0),
                  dilation=(1, 1), groups=1, bias=True),  # the generator's first layer: 1x1 latent -> 4x4
             dict(N=2, C=33, H=5, W=4, Cout=7, R=3, S=3, stride=(1, 1), padding=(1, 1), output_padding=(0, 0),
                  dilation=(1, 1), groups=1, bias=True)]  # stride 1: the flipped-forward path
    rng = random.Random(9)
    for _ in range(4):
        g = rng.choice([1, 2])
        stride, dilation = (rng.randint(1, 3), rng.randint(1, 3)), (rng.randint(1, 2), rng.randint(1, 2))
        R, S = rng.randint(1, 4), rng.randint(1, 4)
        cases.append(dict(N=rng.randint(1, 3), C=g * rng.randint(1, 3), H=rng.randint(1, 7), W=rng.randint(1, 7),
                          Cout=g * rng.randint(1, 3), R=R, S=S, stride=stride,
                          padding=(rng.randint(0, (R - 1) * dilation[0] // 2), rng.randint(0, (S - 1) * dilation[1] // 2)),
                          output_padding=tuple(rng.randint(0, max(s, d) - 1) for s, d in zip(stride, dilation)),
                          dilation=dilation, groups=g, bias=rng.random() < 0.7))
    return cases


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", _transpose_cases(), ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_conv_transpose2d_matches_torch(backend, case, dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(case["N"], case["C"], case["H"], case["W"], generator=g, dtype=torch.float64)
    w = torch.randn(case["C"], case["Cout"] // case["groups"], case["R"], case["S"], generator=g, dtype=torch.float64)
    b = torch.randn(case["Cout"], generator=g, dtype=torch.float64) if case["bias"] else None
    kw = {k: case[k] for k in ("stride", "padding", "output_padding", "groups", "dilation")}
    _check_against_torch(lambda x, w, b: medkern.ops.conv_transpose2d(x, w, b, **kw),
                         lambda x, w, b: F.conv_transpose2d(x, w, b, **kw), (x, w, b), dtype, backend)
    with torch.no_grad():  # the fast path (no custom op) gives the same
        cast = [None if t is None else t.to(dtype=dtype, device=backend) for t in (x, w, b)]
        assert rel_err(medkern.ops.conv_transpose2d(*cast, **kw), F.conv_transpose2d(x, w, b, **kw)) < TOL[dtype]


@pytest.mark.parametrize("route", ROUTES)
def test_conv_transpose2d_gradgradcheck_and_unbatched(route):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    kw = dict(stride=(2, 3), padding=1, output_padding=(1, 2), groups=2, dilation=(1, 2))

    def f(x, w, b):
        with route_context(route):
            return medkern.ops.conv_transpose2d(x, w, b, **kw)
    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))
    with torch.no_grad():
        assert rel_err(f(x[0], w, b), F.conv_transpose2d(x[0], w, b, **kw)) < 1e-12


# --- fused epilogue ----------------------------------------------------------------------------------

@pytest.mark.parametrize("activation,slope", [("relu", None), ("leaky_relu", 0.2), ("leaky_relu", 0.0)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_fused_activation_matches_torch(backend, activation, slope, dtype):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 5, 9, 11, generator=g, dtype=torch.float64)
    w = torch.randn(7, 5, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(7, generator=g, dtype=torch.float64)
    act = (lambda y: F.relu(y)) if activation == "relu" else (lambda y: F.leaky_relu(y, slope))
    kw = dict(stride=2, padding=1, activation=activation)
    if slope is not None:
        kw["negative_slope"] = slope
    _check_against_torch(lambda x, w, b: medkern.ops.conv2d(x, w, b, **kw),
                         lambda x, w, b: act(F.conv2d(x, w, b, stride=2, padding=1)), (x, w, b), dtype, backend)


@pytest.mark.parametrize("route", ROUTES)
def test_fused_activation_gradgradcheck(route):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    for act in ("relu", "leaky_relu"):
        def f(x, w, b):
            with route_context(route):
                return medkern.ops.conv2d(x, w, b, padding=1, activation=act, negative_slope=0.3)
        assert torch.autograd.gradcheck(f, (x, w, b))
        assert torch.autograd.gradgradcheck(f, (x, w, b))


def test_conv_family_under_torch_compile():
    """The custom ops' fake kernels let a model using all three trace into one graph."""
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 8, 8, generator=g)
    w2 = torch.randn(4, 3, 3, 3, generator=g)
    wt = torch.randn(4, 2, 4, 4, generator=g)
    w1 = torch.randn(3, 2, 3, generator=g)

    def model(x):
        y = medkern.ops.conv2d(x, w2, None, padding=1, activation="leaky_relu", negative_slope=0.2)
        y = medkern.ops.conv_transpose2d(y, wt, None, stride=2, padding=1)
        return medkern.ops.conv1d(y.flatten(2), w1, None, padding=1)

    compiled = torch.compile(model, fullgraph=True, backend="eager")
    assert rel_err(compiled(x), model(x)) < 1e-6


# --- bad input -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("call,exc,match", [
    (lambda x4, w4, x3, w3: medkern.ops.conv2d(x4, w4, activation="gelu"), ValueError, "activation"),
    (lambda x4, w4, x3, w3: medkern.ops.conv2d(x4, w4, activation="leaky_relu", negative_slope=-0.1), ValueError,
     "negative_slope"),
    (lambda x4, w4, x3, w3: medkern.ops.conv2d(x4, w4, activation="leaky_relu", negative_slope="0.1"), TypeError,
     "negative_slope"),
    (lambda x4, w4, x3, w3: medkern.ops.conv1d(x4, w3), ValueError, "input"),
    (lambda x4, w4, x3, w3: medkern.ops.conv1d(x3, w4), ValueError, "weight"),
    (lambda x4, w4, x3, w3: medkern.ops.conv1d(x3, w3, stride=0), ValueError, "stride"),
    (lambda x4, w4, x3, w3: medkern.ops.conv1d(x3, w3, padding=(1, 1)), ValueError, "padding"),
    (lambda x4, w4, x3, w3: medkern.ops.conv_transpose2d(x4, w4[:, :, :, :], output_padding=2, stride=2), ValueError,
     "output_padding"),
    (lambda x4, w4, x3, w3: medkern.ops.conv_transpose2d(x4, w4.transpose(0, 1)), ValueError, "weight"),
    (lambda x4, w4, x3, w3: medkern.ops.conv_transpose2d(x4, w4, torch.zeros(5)), ValueError, "bias"),
    (lambda x4, w4, x3, w3: medkern.ops.conv_transpose2d(x4, w4, groups=3), ValueError, "groups"),
    (lambda x4, w4, x3, w3: medkern.ops.conv_transpose2d(x4, w4, padding=9), ValueError, "padding"),
    (lambda x4, w4, x3, w3: medkern.ops.conv_transpose2d(x4.double(), w4), TypeError, "weight"),
])
def test_bad_arguments_raise_naming_the_argument(call, exc, match):
    x4, w4 = torch.randn(2, 4, 5, 5), torch.randn(4, 2, 3, 3)
    x3, w3 = torch.randn(2, 4, 9), torch.randn(3, 4, 3)
    with pytest.raises(exc, match=match):
        call(x4, w4, x3, w3)
