"""medkern.nn modules are drop-ins for torch's, and medkern.patch swaps them in place."""
import copy

import pytest
import torch

import medkern
from conftest import rel_err


CONV_KWARGS = [
    dict(in_channels=3, out_channels=8, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=2, padding=1, dilation=(1, 2), groups=2, bias=False),
    dict(in_channels=3, out_channels=5, kernel_size=4, padding="same"),
    dict(in_channels=3, out_channels=5, kernel_size=3, padding=2, padding_mode="reflect"),
    dict(in_channels=3, out_channels=5, kernel_size=3, padding=1, padding_mode="circular"),
]


@pytest.mark.parametrize("kwargs", CONV_KWARGS)
def test_conv2d_module_is_a_drop_in(kwargs):
    torch.manual_seed(0)
    ours = medkern.nn.Conv2d(**kwargs)
    torch.manual_seed(0)
    theirs = torch.nn.Conv2d(**kwargs)
    # same initialisation, same parameter names, state_dicts load both ways
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):
        assert torch.equal(a, b)
    theirs.load_state_dict(ours.state_dict())
    ours.load_state_dict(theirs.state_dict())
    assert repr(ours).replace("Conv2d", "") == repr(theirs).replace("Conv2d", "")
    x = torch.randn(2, kwargs["in_channels"], 11, 10, requires_grad=True)
    y, y_ref = ours(x), theirs(x)
    assert rel_err(y, y_ref) < 1e-5
    g, g_ref = torch.autograd.grad(y.square().sum(), [x, *ours.parameters()]), \
        torch.autograd.grad(y_ref.square().sum(), [x, *theirs.parameters()])
    for a, b in zip(g, g_ref):
        assert rel_err(a, b) < 1e-5


def _model():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, groups=2), torch.nn.ReLU()),
        torch.nn.Conv2d(4, 2, 1).double().float(),
        torch.nn.Flatten(), torch.nn.Linear(2 * 6 * 6, 3))


def test_patch_swaps_in_place_and_keeps_weights():
    torch.manual_seed(0)
    model = _model()
    reference = copy.deepcopy(model)
    params_before = {n: p for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert medkern.patch(model) is model
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3 and all(type(m) is medkern.nn.Conv2d for m in convs)
    assert all(p is params_before[n] for n, p in model.named_parameters())
    x = torch.randn(5, 1, 8, 8)
    assert rel_err(model(x), reference(x)) < 1e-5
    # it trains: one optimizer step built before the patch moves the same parameters
    loss = model(x).square().mean()
    loss.backward()
    opt.step()
    assert not torch.equal(model[0].weight, reference[0].weight)


def test_patch_leaves_subclasses_and_unsupported_dtypes_alone():
    class MyConv(torch.nn.Conv2d):
        pass

    model = torch.nn.Sequential(MyConv(1, 1, 3), torch.nn.Conv2d(1, 1, 3).half())
    medkern.patch(model)
    assert type(model[0]) is MyConv and type(model[1]) is torch.nn.Conv2d
    with pytest.raises(TypeError, match="model"):
        medkern.patch("not a model")


def test_patched_model_state_dict_round_trip(tmp_path):
    torch.manual_seed(1)
    model = medkern.patch(_model())
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    fresh = _model()
    fresh.load_state_dict(torch.load(path, weights_only=True))
    x = torch.randn(2, 1, 8, 8)
    assert rel_err(fresh(x), model(x)) < 1e-5


POOL_MODULES = [
    ("MaxPool2d", dict(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=True)),
    ("MaxPool2d", dict(kernel_size=2, return_indices=True)),
    ("MaxPool1d", dict(kernel_size=3, stride=2, padding=1, return_indices=True)),
    ("AvgPool2d", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False,
                       divisor_override=None)),
    ("AvgPool2d", dict(kernel_size=2, divisor_override=3)),
    ("AvgPool1d", dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)),
    ("AdaptiveAvgPool2d", dict(output_size=(3, None))),
    ("AdaptiveAvgPool1d", dict(output_size=5)),
    ("AdaptiveMaxPool2d", dict(output_size=4, return_indices=True)),
    ("AdaptiveMaxPool1d", dict(output_size=3)),
]


@pytest.mark.parametrize("name, kwargs", POOL_MODULES, ids=lambda v: v if isinstance(v, str) else "")
def test_pool_modules_are_drop_ins(name, kwargs):
    ours, theirs = getattr(medkern.nn, name)(**kwargs), getattr(torch.nn, name)(**kwargs)
    assert repr(ours) == repr(theirs)
    x = torch.randn(2, 3, 11, 9, dtype=torch.float64)
    if name.endswith("1d"):
        x = x[:, :, 0]
    got, want = ours(x), theirs(x)
    got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
    for g, w in zip(got, want):
        assert torch.equal(g, w) if w.dtype == torch.int64 else rel_err(g, w) < 1e-12


def test_patch_swaps_pooling_layers():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.MaxPool2d(2), torch.nn.AvgPool2d(2),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    x = torch.randn(2, 1, 14, 14)
    want = model(x)
    medkern.patch(model)
    assert [type(m).__module__.split(".")[0] for m in model[:4]] == ["medkern"] * 4
    assert rel_err(model(x), want) < 1e-6
