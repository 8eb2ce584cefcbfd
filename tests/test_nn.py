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


def _same_module_behaviour(ours, theirs, x, **call):
    """Same parameter names and initial values, state_dicts load both ways, same outputs and gradients."""
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):
        assert torch.equal(a, b)
    theirs.load_state_dict(ours.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = x.clone().requires_grad_()
    y, y_ref = ours(x, **call), theirs(x, **call)
    assert y.shape == y_ref.shape and rel_err(y, y_ref) < 1e-5
    g = torch.autograd.grad(y.square().sum(), [x, *ours.parameters()])
    g_ref = torch.autograd.grad(y_ref.square().sum(), [x, *theirs.parameters()])
    for a, b in zip(g, g_ref):
        assert rel_err(a, b) < 1e-5


@pytest.mark.parametrize("kwargs", [
    dict(in_channels=3, out_channels=8, kernel_size=7, padding=3),
    dict(in_channels=4, out_channels=6, kernel_size=4, stride=2, dilation=2, groups=2, bias=False),
    dict(in_channels=3, out_channels=5, kernel_size=4, padding="same"),
    dict(in_channels=3, out_channels=5, kernel_size=3, padding=2, padding_mode="reflect"),
])
def test_conv1d_module_is_a_drop_in(kwargs):
    torch.manual_seed(0)
    ours = medkern.nn.Conv1d(**kwargs)
    torch.manual_seed(0)
    _same_module_behaviour(ours, torch.nn.Conv1d(**kwargs), torch.randn(2, kwargs["in_channels"], 23))


@pytest.mark.parametrize("kwargs,output_size", [
    (dict(in_channels=8, out_channels=4, kernel_size=4, stride=2, padding=1), None),
    (dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, output_padding=1, groups=2), None),
    (dict(in_channels=3, out_channels=5, kernel_size=3, stride=2, padding=1, dilation=2, bias=False), None),
    (dict(in_channels=8, out_channels=4, kernel_size=3, stride=2, padding=1), (12, 11)),  # output_size picks padding
])
def test_conv_transpose2d_module_is_a_drop_in(kwargs, output_size):
    torch.manual_seed(0)
    ours = medkern.nn.ConvTranspose2d(**kwargs)
    torch.manual_seed(0)
    theirs = torch.nn.ConvTranspose2d(**kwargs)
    call = {} if output_size is None else {"output_size": output_size}
    _same_module_behaviour(ours, theirs, torch.randn(2, kwargs["in_channels"], 6, 6), **call)


def _conv_act_model(slope=0.2):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(inplace=True),
                               torch.nn.Conv2d(8, 8, 3), torch.nn.LeakyReLU(slope),
                               torch.nn.Flatten(),
                               torch.nn.Linear(8 * 6 * 6, 2))


def test_patch_fuses_conv_and_activation_keeping_outputs_and_state_dict():
    model = _conv_act_model()
    x = torch.randn(2, 3, 8, 8)
    expected = model(x)
    keys = list(model.state_dict())
    medkern.patch(model)
    assert [m.fused_activation for m in model if isinstance(m, medkern.nn.Conv2d)] == ["relu", "leaky_relu"]
    assert model[2].negative_slope == 0.2
    assert isinstance(model[1], torch.nn.Identity) and isinstance(model[3], torch.nn.Identity)
    assert list(model.state_dict()) == keys
    assert rel_err(model(x), expected) < 1e-5
    unfused = medkern.patch(_conv_act_model(), fuse=False)
    assert all(m.fused_activation is None for m in unfused if isinstance(m, medkern.nn.Conv2d))
    xg = x.clone().requires_grad_()
    g = torch.autograd.grad(model(xg).sum(), [xg, *model.parameters()])
    g_ref = torch.autograd.grad(unfused(xg).sum(), [xg, *unfused.parameters()])
    for a, b in zip(g, g_ref):
        assert rel_err(a, b) < 1e-5


def test_patch_does_not_fuse_where_outputs_could_change():
    model = _conv_act_model(slope=-0.1)  # a negative slope
    shared = model[0]
    outer = torch.nn.Sequential(model, shared)  # the first conv is used again without its ReLU
    model[2].register_forward_hook(lambda m, i, o: None)  # a hook observes the pre-activation output
    medkern.patch(outer)
    assert all(m.fused_activation is None for m in model if isinstance(m, medkern.nn.Conv2d))
    assert isinstance(model[1], torch.nn.ReLU) and isinstance(model[3], torch.nn.LeakyReLU)

    class MySequential(torch.nn.Sequential):  # a subclass may have its own forward
        pass

    sub = MySequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    medkern.patch(sub)
    assert sub[0].fused_activation is None and isinstance(sub[1], torch.nn.ReLU)


def test_patch_swaps_conv1d_and_conv_transpose2d():
    model = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1), torch.nn.Flatten(2),
                                torch.nn.Conv1d(2, 3, 5, padding=2))
    x = torch.randn(2, 4, 5, 5)
    expected = model(x)
    medkern.patch(model)
    assert type(model[0]) is medkern.nn.ConvTranspose2d and type(model[2]) is medkern.nn.Conv1d
    assert rel_err(model(x), expected) < 1e-5
