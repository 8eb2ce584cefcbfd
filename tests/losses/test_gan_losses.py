"""The GAN losses against plain-torch formulas in float64 on every backend: forward and input gradients
for every loss, reduction and weighting, odd shapes; float32; stability at large logits; gradients to
second order; determinism; the custom-op path; modules."""
import pytest
import torch
import torch.nn.functional as F

import medkern
from conftest import TOL, backend_devices, rel_err
from medkern import losses as L

from .formulas import LOSSES, bce, reduce

SHAPES = [(7,), (3, 1, 5, 4), (2, 3, 1, 2049), (1, 1, 3, 3)]  # 2049: a sample spans more than one chunk


@pytest.fixture(params=backend_devices())
def device(request):
    name, dev = request.param
    with medkern.backends.use(name):
        yield dev


def _pair(shape, dtype, device, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    r = (scale * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype).to(device)
    f = (scale * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype).to(device)
    return r.requires_grad_(), f.requires_grad_()


def _check(name, r, f, weight, reduction, tol):
    ours_fn, formula = LOSSES[name]
    got = ours_fn(r, f, weight=weight, reduction=reduction)
    r64, f64 = (t.detach().double().requires_grad_() for t in (r, f))
    want = reduce(formula(r64, f64), None if weight is None else weight.double(), reduction)
    assert got.shape == want.shape and got.dtype == r.dtype
    assert rel_err(got, want) < tol, (got, want)
    g_out = torch.rand(want.shape, dtype=torch.float64) + 0.5  # a non-uniform incoming gradient for "none"
    inputs = [t for t in (r, f) if t.requires_grad]
    got_grads = torch.autograd.grad(got, (r, f), g_out.to(got.dtype).to(got.device), allow_unused=True)
    want_grads = torch.autograd.grad(want, (r64, f64), g_out, allow_unused=True)
    assert inputs
    for gg, wg in zip(got_grads, want_grads):
        if wg is None:
            assert gg is None or not gg.abs().max()
        else:
            assert gg is not None and rel_err(gg, wg) < tol


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_match_torch_formulas(device, name, reduction):
    for i, shape in enumerate(SHAPES):
        r, f = _pair(shape, torch.float64, device, seed=i)
        weight = torch.rand(shape[0], dtype=torch.float64, device=device) + 0.25 if i % 2 else None
        _check(name, r, f, weight, reduction, TOL[torch.float64] * 10)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_float32(device, name):
    r, f = _pair((4, 1, 6, 5), torch.float32, device)
    _check(name, r, f, torch.rand(4, device=device) + 0.5, "mean", 1e-5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_large_logits_are_stable(device, dtype):
    x = torch.tensor([-100.0, -30.0, -1e-3, 0.0, 1e-3, 30.0, 100.0, 500.0, -500.0], dtype=torch.float64)
    r = x.view(-1, 1).to(dtype).to(device).requires_grad_()
    f = x.flip(0).view(-1, 1).to(dtype).to(device).requires_grad_()
    got = L.minimax_d_loss(r, f, reduction="none")
    want = bce(x.view(-1, 1), 1.0) + bce(x.flip(0).view(-1, 1), 0.0)
    assert torch.isfinite(got).all() and rel_err(got, want) < TOL[dtype] * 10
    for fn, target in [(L.nonsaturating_g_loss, 1.0)]:
        out = fn(f, reduction="none")
        assert torch.isfinite(out).all() and rel_err(out, bce(x.flip(0).view(-1, 1), target)) < TOL[dtype] * 10
    (g,) = torch.autograd.grad(got.sum(), r)
    want_g = torch.sigmoid(x) - 1.0
    assert torch.isfinite(g).all() and (g.double().cpu().view(-1) - want_g).abs().max() < 1e-6


def test_matches_binary_cross_entropy_with_logits_exactly_enough():
    g = torch.Generator().manual_seed(3)
    r, f = (torch.randn(6, 1, 30, 30, generator=g, dtype=torch.float64) * 20 for _ in range(2))
    want = F.binary_cross_entropy_with_logits(r, torch.ones_like(r)) + \
        F.binary_cross_entropy_with_logits(f, torch.zeros_like(f))
    assert rel_err(L.minimax_d_loss(r, f), want) < 1e-14


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradcheck_and_gradgradcheck(device, name):
    ours_fn, _ = LOSSES[name]
    r, f = _pair((3, 2, 3), torch.float64, device, scale=1.0)
    w = torch.rand(3, dtype=torch.float64, device=device) + 0.5
    for reduction in ("mean", "none"):
        fn = lambda a, b: ours_fn(a, b, weight=w, reduction=reduction)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (r, f))
        assert torch.autograd.gradgradcheck(fn, (r, f))
    wr = w.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, ww: ours_fn(a, b, weight=ww), (r, f, wr))


# Logistic terms with batch means (relativistic), hinge and square terms: each is threaded at this size.
@pytest.mark.parametrize("loss_fn", [L.relativistic_d_loss, L.hinge_d_loss, L.lsgan_d_loss])
def test_results_are_bitwise_reproducible_across_thread_counts(loss_fn):
    C = medkern._native._C
    r, f = _pair((5, 1, 100, 100), torch.float32, "cpu")
    threads = C.num_threads()
    results = []
    try:
        for n in (1, threads, 1):
            C.set_num_threads(n)
            loss = loss_fn(r, f)
            results.append((loss, *torch.autograd.grad(loss, (r, f))))
    finally:
        C.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


def test_no_grad_fast_path_and_custom_op_agree():
    r, f = _pair((4, 1, 5, 5), torch.float64, "cpu")
    with torch.no_grad():
        fast = L.hinge_d_loss(r, f)
    op, *_ = torch.ops.medkern.gan_loss(r, f, None, 3, -1.0, 3, 1.0, False, 0.25, False, True)
    assert torch.equal(fast, op) and torch.equal(fast, L.hinge_d_loss(r, f).detach())


def test_opcheck_custom_ops():
    r, f = _pair((3, 1, 2, 5), torch.float64, "cpu")
    w = torch.rand(3, dtype=torch.float64)
    for args in [(r, f, w, 1, 0.9, 1, 0.0, False, 1 / 3, False, True),
                 (r, f, None, 3, -1.0, 3, 1.0, True, 1.0, True, True),
                 (None, f, w, 0, 0.0, 2, 1.0, False, 1.0, False, False)]:
        torch.library.opcheck(torch.ops.medkern.gan_loss.default, args)
    torch.library.opcheck(torch.ops.medkern.gan_penalty.default, (r, 1.0, 2.0, False))
    torch.library.opcheck(torch.ops.medkern.gan_penalty.default, (r, -1.0, 2.0, True))


def test_modules_match_functions():
    r, f = _pair((3, 1, 4, 4), torch.float64, "cpu")
    pairs = [(L.MinimaxDLoss(0.1), L.minimax_d_loss(r, f, 0.1)), (L.LSGANDLoss(0.2, 0.9), L.lsgan_d_loss(r, f, 0.2, 0.9)),
             (L.HingeDLoss(reduction="sum"), L.hinge_d_loss(r, f, reduction="sum")),
             (L.WassersteinDLoss(), L.wasserstein_d_loss(r, f)),
             (L.RelativisticDLoss("hinge"), L.relativistic_d_loss(r, f, "hinge")),
             (L.RelativisticGLoss(), L.relativistic_g_loss(r, f))]
    for module, want in pairs:
        assert torch.equal(module(r, f), want)
    for module, want in [(L.NonSaturatingGLoss(), L.nonsaturating_g_loss(f)), (L.LSGANGLoss(0.3), L.lsgan_g_loss(f, 0.3)),
                         (L.HingeGLoss(), L.hinge_g_loss(f)), (L.WassersteinGLoss(reduction="none"),
                                                                L.wasserstein_g_loss(f, reduction="none"))]:
        assert torch.equal(module(f), want)
    assert "label_smoothing=0.1" in repr(L.MinimaxDLoss(0.1))


def test_repeated_backward_through_one_graph_accumulates_correctly():
    """The first backward of a unit gradient hands the saved gradient out; later ones must recompute it,
    even after autograd accumulated into the handed-out tensor in place."""
    r, f = _pair((4, 1, 3, 3), torch.float64, "cpu")
    loss = L.minimax_d_loss(r, f)
    for _ in range(3):
        loss.backward(retain_graph=True)
    r64, f64 = (t.detach().clone().requires_grad_() for t in (r, f))
    (3 * (bce(r64, 1.0) + bce(f64, 0.0)).mean()).backward()
    assert rel_err(r.grad, r64.grad) < 1e-12 and rel_err(f.grad, f64.grad) < 1e-12
