"""Gradient penalties: against plain-torch formulas on every backend, and end to end through a critic
built from medkern layers, which must give the penalty and parameter gradients of the same critic built
from torch layers and be differentiable to second order."""
import pytest
import torch

import medkern
from conftest import backend_devices, rel_err
from medkern import losses as L

from .formulas import penalty


@pytest.fixture(params=backend_devices())
def device(request):
    name, dev = request.param
    with medkern.backends.use(name):
        yield dev


def _critic(lib, seed=0, dtype=torch.float64, device="cpu"):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(lib.Conv2d(2, 4, 3, padding=1), torch.nn.LeakyReLU(0.2), lib.AvgPool2d(2),
                              lib.Conv2d(4, 3, 3, padding=1), torch.nn.LeakyReLU(0.2), lib.Conv2d(3, 1, 2),
                              torch.nn.Flatten())
    return net.to(dtype).to(device)


def _torch_critic_like(critic):
    ref = _critic(torch.nn, dtype=next(critic.parameters()).dtype)
    ref.load_state_dict(critic.state_dict())
    return ref


def _batch(shape, device, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(device)


def _input_grad(critic, x):
    x = x.detach().requires_grad_()
    return torch.autograd.grad(critic(x).sum(), x, create_graph=True)[0]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_penalties_match_formulas(device, reduction):
    critic = _critic(torch.nn, device=device)
    real, fake = _batch((3, 2, 5, 6), device, 1), _batch((3, 2, 5, 6), device, 2)
    cases = [
        (lambda: L.gradient_penalty(critic, real, fake, 7.0, reduction=reduction,
                                    generator=torch.Generator(device).manual_seed(5)),
         lambda: torch.lerp(fake, real, torch.rand((3, 1, 1, 1), dtype=real.dtype, device=device,
                                                    generator=torch.Generator(device).manual_seed(5))), 1.0, 7.0),
        (lambda: L.r1_penalty(critic, real, 3.0, reduction=reduction), lambda: real, None, 1.5),
        (lambda: L.r2_penalty(critic, fake, 3.0, reduction=reduction), lambda: fake, None, 1.5),
    ]
    for ours, points, center, weight in cases:
        got = ours()
        want = penalty(_input_grad(critic, points()), center, weight, reduction)
        assert got.shape == want.shape and rel_err(got, want) < 1e-12
        params = list(critic.parameters())
        g_out = torch.rand(want.shape, dtype=want.dtype, device=device) + 0.5
        # The last bias does not move the input gradient: unused by both.
        for a, b in zip(torch.autograd.grad(ours(), params, g_out, allow_unused=True),
                        torch.autograd.grad(want, params, g_out, allow_unused=True)):
            assert (a is None and b is None) or rel_err(a, b) < 1e-10


def test_dragan_matches_its_formula(device):
    critic = _critic(torch.nn, device=device)
    real = _batch((4, 2, 4, 4), device, 3)
    got = L.dragan_penalty(critic, real, 5.0, k=0.5, generator=torch.Generator(device).manual_seed(9))
    g = torch.Generator(device).manual_seed(9)
    noise = torch.rand(real.shape, dtype=real.dtype, device=device, generator=g)
    alpha = torch.rand((4, 1, 1, 1), dtype=real.dtype, device=device, generator=g)
    want = penalty(_input_grad(critic, real + alpha * (0.5 * real.std() * noise)), 0.5, 5.0, "mean")
    assert rel_err(got, want) < 1e-12


def test_zero_gradient_gives_the_subgradient_of_torch_norm():
    g = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    out = medkern.ops.gan_penalty(g, center=1.0, scale=2.0)
    (grad,) = torch.autograd.grad(out, g)
    assert out.item() == 2.0 and torch.equal(grad, torch.zeros_like(g))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_medkern_critic_matches_torch_critic(dtype):
    ours = _critic(medkern.nn, dtype=dtype)
    theirs = _torch_critic_like(ours)
    assert isinstance(ours[0], medkern.nn.Conv2d)
    real, fake = _batch((4, 2, 8, 8), "cpu", 4).to(dtype), _batch((4, 2, 8, 8), "cpu", 5).to(dtype)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for fn in [lambda c: L.gradient_penalty(c, real, fake, generator=torch.Generator().manual_seed(1)),
               lambda c: L.r1_penalty(c, real), lambda c: L.dragan_penalty(c, real, generator=torch.Generator().manual_seed(2)),
               lambda c: L.wasserstein_d_loss(c(real), c(fake)) + L.gradient_penalty(
                   c, real, fake, generator=torch.Generator().manual_seed(1))]:
        a, b = fn(ours), fn(theirs)
        assert rel_err(a, b) < tol
        for ga, gb in zip(torch.autograd.grad(a, list(ours.parameters()), allow_unused=True),
                          torch.autograd.grad(b, list(theirs.parameters()), allow_unused=True)):
            assert (ga is None and gb is None) or rel_err(ga, gb) < tol * 10


def test_gradcheck_through_a_medkern_critic():
    torch.manual_seed(0)
    w1 = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)

    def critic_penalty(x, w1, w2, penalise):
        def critic(t):
            h = torch.nn.functional.leaky_relu(medkern.ops.conv2d(t, w1, padding=1), 0.2)
            return medkern.ops.conv2d(medkern.ops.avg_pool2d(h, 2), w2).flatten(1)
        return penalise(critic, x)

    for penalise in (lambda c, t: L.r1_penalty(c, t, reduction="none"),
                    lambda c, t: L.gradient_penalty(c, t, t.detach().flip(0), generator=torch.Generator().manual_seed(0))):
        # d/dw of a penalty is the critic's mixed second derivative; gradgradcheck goes one order further.
        assert torch.autograd.gradcheck(lambda a, b: critic_penalty(x, a, b, penalise), (w1, w2))
        assert torch.autograd.gradgradcheck(lambda a, b: critic_penalty(x, a, b, penalise), (w1, w2))


def test_critic_with_fused_leaky_relu_convolutions_matches_torch():
    """The activation fused into medkern's conv epilogue must have the double backward of torch's
    conv + LeakyReLU for the penalty's parameter gradients to agree."""
    theirs = _critic(torch.nn)
    ours = torch.nn.Sequential(medkern.nn.Conv2d(2, 4, 3, padding=1), medkern.nn.AvgPool2d(2),
                               medkern.nn.Conv2d(4, 3, 3, padding=1), medkern.nn.Conv2d(3, 1, 2),
                               torch.nn.Flatten()).double()
    for i, j in [(0, 0), (2, 3), (3, 5)]:
        ours[i].load_state_dict(theirs[j].state_dict())
    for conv in (ours[0], ours[2]):
        conv.fused_activation, conv.negative_slope = "leaky_relu", 0.2
    real, fake = _batch((3, 2, 6, 6), "cpu", 7), _batch((3, 2, 6, 6), "cpu", 8)
    a = L.gradient_penalty(ours, real, fake, generator=torch.Generator().manual_seed(3))
    b = L.gradient_penalty(theirs, real, fake, generator=torch.Generator().manual_seed(3))
    assert rel_err(a, b) < 1e-12
    ours_params = [p for m in (ours[0], ours[2], ours[3]) for p in m.parameters()]
    theirs_params = [p for m in (theirs[0], theirs[3], theirs[5]) for p in m.parameters()]
    # A bias before the activation reaches the input gradient only through the activation's mask, whose
    # derivative is zero: torch reports zeros, medkern's epilogue no gradient at all.
    for p, ga, gb in zip(ours_params, torch.autograd.grad(a, ours_params, allow_unused=True),
                         torch.autograd.grad(b, theirs_params, allow_unused=True)):
        ga = torch.zeros_like(p) if ga is None else ga
        gb = torch.zeros_like(p) if gb is None else gb
        assert torch.allclose(ga, gb, rtol=1e-10, atol=1e-14)
