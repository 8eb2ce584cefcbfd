"""Bad inputs to the GAN losses raise TypeError/ValueError naming the argument, at the ops layer and at
the bindings."""
import pytest
import torch

import medkern
from medkern import losses as L


def _t(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype)


@pytest.mark.parametrize("call, error, match", [
    (lambda: L.hinge_d_loss(_t(4, 1), _t(5, 1)), ValueError, "fake: shape"),
    (lambda: L.minimax_d_loss(_t(4, 3), _t(4, 3), weight=torch.tensor([1.0, float("nan"), 1.0, 1.0])), ValueError,
     "weight: must be finite"),
    (lambda: L.minimax_d_loss(_t(4, 3), _t(4, 3), weight=torch.tensor([1.0, float("inf"), 1.0, 1.0])), ValueError,
     "weight: must be finite"),
    (lambda: L.lsgan_d_loss(_t(4, 3), _t(4, 3), weight=torch.ones(3)), ValueError, "weight: expected one weight"),
    (lambda: L.lsgan_d_loss(_t(4, 3), _t(4, 3), weight=torch.ones(4, dtype=torch.float64)), TypeError, "weight"),
    (lambda: L.hinge_d_loss(_t(4, 3), _t(4, 3, dtype=torch.float64)), TypeError, "fake"),
    (lambda: L.hinge_g_loss(torch.ones(4, 3, dtype=torch.int64)), TypeError, "fake"),
    (lambda: L.hinge_g_loss(torch.ones(0, 3)), ValueError, "fake"),
    (lambda: L.hinge_g_loss(torch.tensor(1.0)), ValueError, "fake"),
    (lambda: L.hinge_g_loss([1.0, 2.0]), TypeError, "fake"),
    (lambda: L.hinge_d_loss(_t(4, 3), _t(4, 3), reduction="avg"), ValueError, "reduction"),
    (lambda: L.minimax_d_loss(_t(4, 3), _t(4, 3), label_smoothing=1.0), ValueError, "label_smoothing"),
    (lambda: L.relativistic_d_loss(_t(4, 3), _t(4, 3), kind="wgan"), ValueError, "kind"),
    (lambda: L.lsgan_g_loss(_t(4, 3), c="1"), TypeError, "c"),
    (lambda: L.r1_penalty(_t(4, 3), _t(4, 3)), TypeError, "critic"),
    (lambda: L.gradient_penalty(torch.nn.Linear(3, 1), _t(4, 3), _t(3, 3)), ValueError, "fake: shape"),
    (lambda: L.r1_penalty(torch.nn.Linear(3, 1), _t(4, 3), weight=float("nan")), ValueError, "weight"),
    (lambda: L.dragan_penalty(torch.nn.Linear(3, 1), _t(4, 3), k=-1.0), ValueError, "k"),
    (lambda: L.feature_matching_loss([_t(4, 3)], [_t(4, 3), _t(4, 3)]), ValueError, "fake_features"),
    (lambda: L.auxiliary_classifier_loss(_t(4, 3), torch.tensor([0, 1, 2, 0]), reduction="x"), ValueError, "reduction"),
])
def test_bad_input_raises_naming_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_bindings_check_again():
    C = medkern._native._C
    r, f = _t(4, 3), _t(4, 3)
    ps, total, ws = torch.empty(4), torch.empty(()), torch.empty(C.gan_loss_workspace_size(4, 3))
    base = dict(real=r, fake=f, weight=None, per_sample=ps, total=total, d_real=None, d_fake=None, dsum_real=None,
                dsum_fake=None, workspace=ws, real_term=1, real_param=1.0, fake_term=1, fake_param=0.0,
                relativistic=False, scale=0.25)
    C.gan_loss_forward(**base)
    for change, error, match in [(dict(fake=_t(4, 2)), ValueError, "fake: shape"),
                                 (dict(per_sample=torch.empty(3)), ValueError, "per_sample"),
                                 (dict(workspace=torch.empty(1)), ValueError, "workspace"),
                                 (dict(d_real=torch.empty(4, 2)), ValueError, "d_real"),
                                 (dict(real_term=9), ValueError, "real_term"),
                                 (dict(real=None), ValueError, "real"),
                                 (dict(weight=torch.ones(4, dtype=torch.float64)), TypeError, "weight"),
                                 (dict(real=torch.ones(4, 3, dtype=torch.int64)), TypeError, "real"),
                                 (dict(real=_t(4, 6)[:, ::2]), ValueError, "contiguous")]:
        with pytest.raises(error, match=match):
            C.gan_loss_forward(**{**base, **change})
    with pytest.raises(ValueError, match="coef"):
        C.gan_penalty_forward(r, ps, total, torch.empty(5), torch.empty(4), 1.0, 1.0)


def test_cpu_bindings_need_no_workspace():
    """On the CPU a workspace of None means the binding's own host memory: same results as an array."""
    C = medkern._native._C
    r, f = _t(4, 3), _t(4, 3)
    outs = []
    for ws in (torch.empty(C.gan_loss_workspace_size(4, 3)), None):
        ps, total, dr = torch.full((4,), float("nan")), torch.full((), float("nan")), torch.full((4, 3), float("nan"))
        C.gan_loss_forward(r, f, None, ps, total, dr, None, None, None, ws, 1, 1.0, 1, 0.0, False, 0.25)
        outs.append((ps, total, dr))
    for a, b in zip(*outs):
        assert torch.equal(a, b) and torch.isfinite(a).all()
    pens = []
    for ws in (torch.empty(C.gan_penalty_workspace_size(4, 3)), None):
        ps, total, coef = torch.full((4,), float("nan")), torch.full((), float("nan")), torch.full((4,), float("nan"))
        C.gan_penalty_forward(r, ps, total, coef, ws, 1.0, 10.0)
        pens.append((ps, total, coef))
    for a, b in zip(*pens):
        assert torch.equal(a, b) and torch.isfinite(a).all()
