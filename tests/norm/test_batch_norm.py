"""medkern.ops.batch_norm and medkern.nn.BatchNorm*d against torch in float64: awkward shapes, every
activation, batch and running statistics, torch's momentum rules, every backend and both routes (eager and
the custom ops), gradients to second order, opcheck, torch.compile and bad input."""
import copy

import pytest
import torch
import torch.nn.functional as F

import medkern
from conftest import ROUTES, backend_devices, rel_err, route_context

# (name, shape): ranks 2 to 5, one channel, one value per plane, planes shorter and longer than a vector.
SHAPES = {"rank2": (7, 5), "one_channel": (4, 1, 6, 5), "single_values": (9, 3, 1, 1), "rank3": (3, 4, 33),
          "odd_planes": (2, 6, 5, 7), "volume": (2, 3, 3, 4, 5), "wide": (2, 20, 17, 19)}
ACTIVATIONS = {"none": (None, 0.0), "relu": ("relu", 0.0), "leaky": ("leaky_relu", 0.3), "leaky0": ("leaky_relu", 0.0)}


@pytest.fixture(params=backend_devices())
def device(request):
    name, dev = request.param
    with medkern.backends.use(name):
        yield dev


def _torch(x, rm, rv, w, b, training, momentum, eps, activation, slope):
    y = F.batch_norm(x, rm, rv, w, b, training, momentum, eps)
    return {None: y, "relu": F.relu(y), "leaky_relu": F.leaky_relu(y, slope)}[activation]


def _inputs(shape, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    # Far-from-zero means with small spreads: sums of squares that cancel.
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 0.5 + torch.randn(c, generator=g).view(
        1, c, *(1,) * (len(shape) - 2)).double() * 20
    w, b = torch.randn(c, generator=g, dtype=torch.float64), torch.randn(c, generator=g, dtype=torch.float64)
    rm, rv = torch.randn(c, generator=g, dtype=torch.float64), torch.rand(c, generator=g, dtype=torch.float64) + 0.5
    return [t.to(dtype=dtype, device=device) for t in (x, w, b, rm, rv)]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("act", ACTIVATIONS, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_training_matches_torch(device, shape, act, dtype, route):
    activation, slope = ACTIVATIONS[act]
    x, w, b, rm, rv = _inputs(SHAPES[shape], dtype, device)
    ref = [t.detach().double().requires_grad_() for t in (x, w, b)]
    rm_ref, rv_ref = rm.double().clone(), rv.double().clone()
    for t in (x, w, b):
        t.requires_grad_()
    with route_context(route):
        y = medkern.ops.batch_norm(x, rm, rv, w, b, True, 0.2, 1e-3, activation, slope)
    want = _torch(ref[0], rm_ref, rv_ref, ref[1], ref[2], True, 0.2, 1e-3, activation, slope)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert rel_err(y, want) < tol
    assert rel_err(rm, rm_ref) < tol and rel_err(rv, rv_ref) < tol
    dy = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with route_context(route):
        got = torch.autograd.grad(y, (x, w, b), dy.to(dtype=dtype, device=device))
    for g, r in zip(got, torch.autograd.grad(want, ref, dy.to(want.device))):
        assert rel_err(g, r) < (1e-10 if dtype == torch.float64 else 1e-4)


@pytest.mark.parametrize("act", ACTIVATIONS, ids=str)
@pytest.mark.parametrize("shape", ["rank2", "odd_planes", "volume"])
def test_running_statistics_and_no_affine(device, shape, act):
    """Eval with running statistics (one affine pass), and a BatchNorm without weight and bias."""
    activation, slope = ACTIVATIONS[act]
    x, _, _, rm, rv = _inputs(SHAPES[shape], torch.float64, device)
    for training in (False, True):
        got = medkern.ops.batch_norm(x, rm.clone(), rv.clone(), None, None, training, 0.1, 1e-5, activation, slope)
        want = _torch(x, rm.clone(), rv.clone(), None, None, training, 0.1, 1e-5, activation, slope)
        assert rel_err(got, want) < 1e-12


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("track", [True, False])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_module_is_torchs_over_training_and_eval(device, rank, track, momentum):
    """Several training steps then eval: outputs, running statistics, num_batches_tracked and state_dict
    keys equal torch's module's (momentum=None is the cumulative average)."""
    torch.manual_seed(0)
    cls = {1: torch.nn.BatchNorm1d, 2: torch.nn.BatchNorm2d, 3: torch.nn.BatchNorm3d}[rank]
    theirs = cls(5, momentum=momentum, track_running_stats=track).double().to(device)
    with torch.no_grad():
        theirs.weight.uniform_(0.5, 2)
        theirs.bias.normal_()
    ours = medkern.patch(copy.deepcopy(theirs))
    assert type(ours).__name__ == cls.__name__ and type(ours) is not cls
    shape = {1: (6, 5, 7), 2: (4, 5, 3, 6), 3: (2, 5, 3, 4, 2)}[rank]
    for step in range(3):
        x = torch.randn(shape, dtype=torch.float64, device=device) * (step + 1) + step
        assert rel_err(ours(x), theirs(x)) < 1e-12
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for k, t in theirs.state_dict().items():
        assert torch.allclose(ours.state_dict()[k], t, rtol=1e-12, atol=1e-12), k
    ours.eval(), theirs.eval()
    x = torch.randn(shape, dtype=torch.float64, device=device)
    assert rel_err(ours(x), theirs(x)) < 1e-12


def test_gradcheck_and_gradgradcheck():
    """Second order through batch statistics and the activation (a gradient penalty through a critic with
    BatchNorm)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(4, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, generator=g, requires_grad=True)
    for activation in (None, "leaky_relu"):
        f = lambda x, w, b: medkern.ops.batch_norm(x, None, None, w, b, True, 0.1, 1e-5, activation, 0.2)  # noqa: E731
        assert torch.autograd.gradcheck(f, (x, w, b))
        assert torch.autograd.gradgradcheck(f, (x, w, b))


def test_opcheck():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, 2, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(4, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, generator=g, requires_grad=True)
    torch.library.opcheck(torch.ops.medkern.batch_norm.default, (x, w, b, 1e-5, 1, 0.0))
    y, mean, invstd, _ = torch.ops.medkern.batch_norm(x, w, b, 1e-5, 1, 0.0)
    torch.library.opcheck(torch.ops.medkern.batch_norm_backward.default,
                          (torch.randn_like(y), x.detach(), y.detach(), mean, invstd, w.detach(), 1e-5, 1, 0.0))


def test_torch_compile_training_step_matches_eager():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.LeakyReLU(0.1)).double()
    eager = medkern.patch(copy.deepcopy(net))
    compiled_net = medkern.patch(copy.deepcopy(net))
    compiled = torch.compile(compiled_net, fullgraph=True)
    x = torch.randn(4, 3, 10, 9, dtype=torch.float64)
    for model in (eager, compiled):
        model(x).square().sum().backward()
    for (name, a), b in zip(eager.named_parameters(), compiled_net.parameters()):
        assert rel_err(b.grad, a.grad) < 1e-10, name
    assert rel_err(compiled_net[1].running_var, eager[1].running_var) < 1e-12


def test_patch_fuses_an_activation_after_a_batchnorm():
    """Pre-activation networks (DenseNet): BatchNorm, ReLU, then the convolution; the ReLU's slot becomes an
    Identity, the state_dict keys stay, and training and eval give torch's answers."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.BatchNorm2d(3), torch.nn.ReLU(), torch.nn.Conv2d(3, 5, 3),
                              torch.nn.BatchNorm2d(5), torch.nn.LeakyReLU(0.2), torch.nn.AdaptiveAvgPool2d(1)).double()
    ours = medkern.patch(copy.deepcopy(net))
    assert [type(m).__name__ for m in ours] == ["BatchNorm2d", "Identity", "Conv2d", "FoldedBatchNorm2d",
                                               "Identity", "AdaptiveAvgPool2d"]
    assert ours[0].fused_activation == "relu" and ours[3].fused_activation == "leaky_relu"
    assert ours.state_dict().keys() == net.state_dict().keys()
    for mode in ("train", "eval"):
        getattr(ours, mode)(), getattr(net, mode)()
        x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
        assert rel_err(ours(x), net(x)) < 1e-12


def test_outputs_are_written_everywhere():
    """MEDKERN_POISON fills outputs with NaN first: every element must be written, also where the plane
    length is not a multiple of the vector width."""
    x = torch.randn(3, 5, 7, 3)
    y = medkern.ops.batch_norm(x, None, None, None, None, True, activation="relu")
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("call, error, match", [
    (lambda x: medkern.ops.batch_norm(x[0, 0, 0], None, None, training=True), ValueError, "input.*2 or 3 or 4 or 5-D"),
    (lambda x: medkern.ops.batch_norm(x, None, None, torch.ones(3), training=True), ValueError, "4 values"),
    (lambda x: medkern.ops.batch_norm(x, torch.zeros(4), None, training=True), ValueError, "both or neither"),
    (lambda x: medkern.ops.batch_norm(x.int(), None, None, training=True), TypeError, "dtype"),
    (lambda x: medkern.ops.batch_norm(x, None, None, torch.ones(4).double(), training=True), TypeError, "dtype"),
    (lambda x: medkern.ops.batch_norm(x[:1, :, :1, :1], None, None, training=True), ValueError, "more than 1 value"),
    (lambda x: medkern.ops.batch_norm(x, None, None, training=True, eps=-1.0), ValueError, "eps"),
    (lambda x: medkern.ops.batch_norm(x, None, None, training=True, activation="gelu"), ValueError, "activation"),
    (lambda x: medkern.ops.batch_norm(x, None, None, training=True, activation="leaky_relu", negative_slope=-0.1),
     ValueError, "negative_slope"),
], ids=["rank", "weight_size", "one_running", "int", "mixed_dtype", "one_value", "eps", "activation", "slope"])
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call(torch.randn(2, 4, 3, 3))


def test_binding_checks_its_arguments():
    """The compiled entries check every argument themselves (a caller other than the ops)."""
    c = medkern._native.require_cpu()
    x = torch.randn(2, 3, 4)
    mean, var = torch.empty(3), torch.empty(3)
    with pytest.raises(ValueError, match="mean.*shape"):
        c.batch_norm_statistics(x, torch.empty(2), var)
    with pytest.raises(TypeError, match="var.*dtype"):
        c.batch_norm_statistics(x, mean, torch.empty(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="overlap"):
        c.batch_norm_apply(x, torch.ones(3), torch.zeros(3), x)
    with pytest.raises(ValueError, match="activation"):
        c.batch_norm_apply(x, torch.ones(3), torch.zeros(3), torch.empty_like(x), 5)
    with pytest.raises(ValueError, match="output: required"):
        c.batch_norm_backward(x, x, None, mean, var, None, torch.empty_like(x), None, None, 1)
    with pytest.raises(ValueError, match="rank 2"):
        c.batch_norm_statistics(torch.randn(5), mean, var)


@pytest.mark.parametrize("route", ROUTES)
def test_output_changed_in_place_still_differentiates(route):
    """A residual block adds to the BatchNorm's output in place (MONAI's ResNet: out += identity): without an
    activation the output is not saved for the backward, as torch's BatchNorm does not save it."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64, generator=g, requires_grad=True)
    residual = torch.randn(3, 4, 5, 5, dtype=torch.float64, generator=g)
    w = torch.rand(4, dtype=torch.float64, generator=g, requires_grad=True)
    with route_context(route):
        out = medkern.ops.batch_norm(x, None, None, w, None, True)
        out += residual
        got = torch.autograd.grad(out.square().sum(), (x, w))
    ref = F.batch_norm(x, None, None, w, None, True) + residual
    for a, b in zip(got, torch.autograd.grad(ref.square().sum(), (x, w))):
        assert rel_err(a, b) < 1e-12
