"""medkern.ops 3-d pooling as a PyTorch user meets it: torch's functional signatures, every option, NaN/-inf
behaviour, unbatched, channels_last_3d and strided inputs, gradients to second order, opcheck, bad input,
the nn modules and medkern.patch, and torch.compile. Runs on every backend that has the 3-d entries."""
import pytest
import torch
import torch.nn.functional as F

import medkern
from conftest import backend_devices, rel_err

from .cases import VOLUME_ADAPTIVE, VOLUME_CASES

ENTRIES = ("max_pool3d_forward", "avg_pool3d_forward", "avg_pool3d_backward", "adaptive_avg_pool3d_forward",
           "adaptive_avg_pool3d_backward", "adaptive_max_pool3d_forward")


@pytest.fixture(params=backend_devices())
def device(request):
    name, dev = request.param
    mod = medkern.backends.family("pool", dev, name)
    if not all(hasattr(mod, e) for e in ENTRIES):
        pytest.skip(f"{name}/{dev} has no 3-d pooling entries")
    with medkern.backends.use(name):
        yield dev


def _same(got, want):
    if isinstance(want, tuple):
        return len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want))
    if want.dtype == torch.int64:
        return torch.equal(got.cpu(), want.cpu())
    return got.shape == want.shape and torch.equal(got.isnan().cpu(), want.isnan().cpu()) and \
        torch.allclose(got.detach().cpu().nan_to_num(), want.detach().cpu().nan_to_num(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", VOLUME_CASES, ids=lambda c: c.id())
def test_max_pool3d_matches_torch(device, case):
    x = case.input(torch.float64, device)
    kw = case.torch_kwargs()
    assert _same(medkern.ops.max_pool3d(x, **kw, return_indices=True), F.max_pool3d(x, **kw, return_indices=True))
    assert _same(medkern.ops.max_pool3d(x, **kw), F.max_pool3d(x, **kw))
    assert _same(medkern.ops.max_pool3d(x[0], **kw, return_indices=True),
                 F.max_pool3d(x[0], **kw, return_indices=True))  # unbatched


@pytest.mark.parametrize("count_include_pad", [True, False], ids=["include_pad", "exclude_pad"])
@pytest.mark.parametrize("case", [c for c in VOLUME_CASES if c.fits_avg()], ids=lambda c: c.id())
def test_avg_pool3d_matches_torch(device, case, count_include_pad):
    x = case.input(torch.float64, device, specials=False)
    kw = dict(case.torch_kwargs(with_dilation=False), count_include_pad=count_include_pad)
    assert _same(medkern.ops.avg_pool3d(x, **kw), F.avg_pool3d(x, **kw))
    assert _same(medkern.ops.avg_pool3d(x, divisor_override=3, **kw), F.avg_pool3d(x, divisor_override=3, **kw))
    assert _same(medkern.ops.avg_pool3d(x[0], **kw), F.avg_pool3d(x[0], **kw))  # unbatched


@pytest.mark.parametrize("shape, size", VOLUME_ADAPTIVE, ids=lambda v: "x".join(map(str, v)))
def test_adaptive_pools3d_match_torch(device, shape, size):
    x = torch.randn(shape, dtype=torch.float64, device=device).round()  # ties
    assert _same(medkern.ops.adaptive_avg_pool3d(x, size), F.adaptive_avg_pool3d(x, size))
    assert _same(medkern.ops.adaptive_max_pool3d(x, size, True), F.adaptive_max_pool3d(x, size, True))
    assert _same(medkern.ops.adaptive_max_pool3d(x, size), F.adaptive_max_pool3d(x, size))
    keep_depth = (None, *size[1:])
    assert _same(medkern.ops.adaptive_avg_pool3d(x, keep_depth), F.adaptive_avg_pool3d(x, keep_depth))
    assert _same(medkern.ops.adaptive_max_pool3d(x[0], size[0], True), F.adaptive_max_pool3d(x[0], size[0], True))


def test_nan_and_infinities_behave_like_torch(device):
    x = torch.full((1, 2, 3, 4, 4), float("-inf"), dtype=torch.float64, device=device)  # all -inf windows
    x[0, 0, 0, 0, 1] = x[0, 0, 2, 3, 3] = x[0, 1, 1, 2, 2] = float("nan")
    x[0, 1, 0, 0, 0] = x[0, 1, 0, 1, 1] = 2.0  # tied maxima
    x[0, 0, 1, 2, 0] = float("inf")
    for kw in [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=(3, 1, 4)),
               dict(kernel_size=2, dilation=2, ceil_mode=True)]:
        assert _same(medkern.ops.max_pool3d(x, return_indices=True, **kw), F.max_pool3d(x, return_indices=True, **kw))
    assert _same(medkern.ops.adaptive_max_pool3d(x, 2, True), F.adaptive_max_pool3d(x, 2, True))
    assert _same(medkern.ops.avg_pool3d(x, 2), F.avg_pool3d(x, 2))


def test_channels_last_3d_and_strided_inputs(device):
    x = torch.randn(2, 5, 8, 7, 6, dtype=torch.float64, device=device)
    for inp in (x.to(memory_format=torch.channels_last_3d), x[:, :, ::2], x.transpose(2, 4)):
        assert _same(medkern.ops.max_pool3d(inp, 3, 2, 1, return_indices=True),
                     F.max_pool3d(inp, 3, 2, 1, return_indices=True))
        assert _same(medkern.ops.avg_pool3d(inp, 2), F.avg_pool3d(inp, 2))
        assert _same(medkern.ops.adaptive_avg_pool3d(inp, 1), F.adaptive_avg_pool3d(inp, 1))
        assert _same(medkern.ops.adaptive_max_pool3d(inp, (2, 1, 3), True), F.adaptive_max_pool3d(inp, (2, 1, 3), True))


GRAD_FNS = {
    "max": lambda x: medkern.ops.max_pool3d(x, 3, 2, 1, dilation=(1, 1, 2), ceil_mode=True),
    "max_with_indices": lambda x: medkern.ops.max_pool3d(x, (2, 3, 2), (1, 2, 2), return_indices=True)[0],
    "avg": lambda x: medkern.ops.avg_pool3d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
    "avg_divisor": lambda x: medkern.ops.avg_pool3d(x, (2, 3, 2), 1, divisor_override=4),
    "adaptive_avg": lambda x: medkern.ops.adaptive_avg_pool3d(x, (3, 2, 4)),
    "adaptive_max": lambda x: medkern.ops.adaptive_max_pool3d(x, (3, 2, 4)),
}


@pytest.mark.parametrize("name", list(GRAD_FNS))
def test_gradcheck_and_gradgradcheck(device, name):
    g = torch.Generator().manual_seed(5)
    # distinct values keep max pooling differentiable at the sample point
    x = torch.randperm(4 * 5 * 6, generator=g).double().view(1, 1, 4, 5, 6).div(10).to(device).requires_grad_()
    # fast mode (random projections of the Jacobians) keeps the second order check of a volume in seconds
    assert torch.autograd.gradcheck(GRAD_FNS[name], (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(GRAD_FNS[name], (x,), fast_mode=True)


@medkern.backends.use("reference")
def test_opcheck():
    x = torch.randn(2, 3, 5, 6, 7, dtype=torch.float64, requires_grad=True)
    geometry = ([3, 2, 3], [2, 2, 1], [1, 1, 0], [1, 2, 1], True)
    ops = torch.ops.medkern
    y, idx = ops.max_pool3d_with_indices(x, *geometry)
    g = torch.randn_like(y, requires_grad=True)
    avg = ([3, 3, 2], [2, 2, 2], [1, 1, 0], True, False, None)
    samples = {
        "max_pool3d": (ops.max_pool3d, (x, *geometry)),
        "max_pool3d_with_indices": (ops.max_pool3d_with_indices, (x, *geometry)),
        "max_pool3d_backward": (ops.max_pool3d_backward, (g, idx, list(x.shape))),
        "max_pool3d_backward_from_input": (ops.max_pool3d_backward_from_input, (g, x.detach(), *geometry)),
        "avg_pool3d": (ops.avg_pool3d, (x, *avg)),
        "avg_pool3d_backward": (ops.avg_pool3d_backward,
                                (torch.randn(2, 3, 3, 4, 4, dtype=torch.float64, requires_grad=True), list(x.shape),
                                 *avg)),
        "adaptive_avg_pool3d": (ops.adaptive_avg_pool3d, (x, [2, 4, 3])),
        "adaptive_avg_pool3d_backward": (ops.adaptive_avg_pool3d_backward,
                                         (torch.randn(2, 3, 2, 4, 3, dtype=torch.float64, requires_grad=True),
                                          list(x.shape))),
        "adaptive_max_pool3d": (ops.adaptive_max_pool3d, (x, [2, 4, 3])),
    }
    for name, (op, args) in samples.items():
        assert op.default.name() == f"medkern::{name}"
        torch.library.opcheck(op, args)


@pytest.mark.parametrize("call, exc, needle", [
    pytest.param(lambda x: medkern.ops.max_pool3d(x, 2, padding=2), ValueError, "padding", id="max_padding_over_half"),
    pytest.param(lambda x: medkern.ops.max_pool3d(x, 3, padding=1, dilation=(1, 4, 1)), ValueError, "input",
                 id="max_window_too_big"),
    pytest.param(lambda x: medkern.ops.max_pool3d(x, 0), ValueError, "kernel_size", id="max_zero_kernel"),
    pytest.param(lambda x: medkern.ops.max_pool3d(x, (2, 2)), ValueError, "kernel_size", id="max_two_values"),
    pytest.param(lambda x: medkern.ops.max_pool3d(x, 2.5), TypeError, "kernel_size", id="max_float_kernel"),
    pytest.param(lambda x: medkern.ops.max_pool3d(x, 2, stride=(1, 0, 1)), ValueError, "stride", id="max_zero_stride"),
    pytest.param(lambda x: medkern.ops.max_pool3d(x, 2, dilation=0), ValueError, "dilation", id="max_zero_dilation"),
    pytest.param(lambda x: medkern.ops.max_pool3d(x, 2, padding=-1), ValueError, "padding", id="max_negative_padding"),
    pytest.param(lambda x: medkern.ops.max_pool3d(x.int(), 2), TypeError, "input", id="max_int_input"),
    pytest.param(lambda x: medkern.ops.max_pool3d(x[0, 0], 2), ValueError, "input", id="max_3d_input"),
    pytest.param(lambda x: medkern.ops.max_pool3d(x[:, :, :0], 2), ValueError, "input", id="max_empty_depth"),
    pytest.param(lambda x: medkern.ops.max_pool3d([1.0], 2), TypeError, "input", id="max_not_a_tensor"),
    pytest.param(lambda x: medkern.ops.avg_pool3d(x, 3, padding=2), ValueError, "padding", id="avg_padding_over_half"),
    pytest.param(lambda x: medkern.ops.avg_pool3d(x[:, :, :1], 2, padding=1), ValueError, "input",
                 id="avg_input_smaller_than_kernel"),
    pytest.param(lambda x: medkern.ops.avg_pool3d(x, 2, divisor_override=0), ValueError, "divisor_override",
                 id="avg_zero_divisor"),
    pytest.param(lambda x: medkern.ops.avg_pool3d(x, 2, divisor_override=1.5), TypeError, "divisor_override",
                 id="avg_float_divisor"),
    pytest.param(lambda x: medkern.ops.adaptive_avg_pool3d(x, 0), ValueError, "output_size", id="adaptive_avg_zero"),
    pytest.param(lambda x: medkern.ops.adaptive_avg_pool3d(x, (2, 2)), ValueError, "output_size",
                 id="adaptive_avg_two_values"),
    pytest.param(lambda x: medkern.ops.adaptive_max_pool3d(x, "big"), TypeError, "output_size",
                 id="adaptive_max_string"),
    pytest.param(lambda x: medkern.ops.adaptive_max_pool3d(x, None), TypeError, "output_size", id="adaptive_max_none"),
    pytest.param(lambda x: medkern.ops.adaptive_avg_pool3d(x[:, :0], 2), ValueError, "input",
                 id="adaptive_avg_no_channels"),
])
def test_bad_input_raises_naming_the_argument(call, exc, needle):
    with medkern.backends.use("reference"):
        with pytest.raises(exc, match=needle):
            call(torch.randn(2, 3, 6, 6, 6))


def test_a_backend_without_3d_entries_says_so(monkeypatch):
    reference_pool = medkern.backends.family("pool", "cpu", "reference")
    monkeypatch.delattr(reference_pool, "max_pool3d_forward")
    with medkern.backends.use("reference"):
        with pytest.raises(medkern.backends.BackendUnavailableError, match="max_pool3d_forward"):
            medkern.ops.max_pool3d(torch.randn(1, 1, 4, 4, 4), 2)


TORCH_MODULES = {
    "MaxPool3d": lambda: torch.nn.MaxPool3d((3, 2, 3), (2, 1, 2), (1, 1, 0), (1, 2, 1), ceil_mode=True),
    "MaxPool3d_indices": lambda: torch.nn.MaxPool3d(2, return_indices=True),
    "AvgPool3d": lambda: torch.nn.AvgPool3d(3, 2, 1, ceil_mode=True, count_include_pad=False, divisor_override=5),
    "AdaptiveAvgPool3d": lambda: torch.nn.AdaptiveAvgPool3d((2, None, 3)),
    "AdaptiveMaxPool3d": lambda: torch.nn.AdaptiveMaxPool3d((3, 2, 1), return_indices=True),
}


@pytest.mark.parametrize("name", list(TORCH_MODULES))
def test_modules_are_drop_in_and_patch_swaps_them(device, name):
    theirs = TORCH_MODULES[name]()
    ours_cls = getattr(medkern.nn, type(theirs).__name__)
    ours = ours_cls(**{k: getattr(theirs, k) for k in theirs.__constants__})
    assert repr(ours) == repr(theirs) and ours.state_dict() == theirs.state_dict()
    x = torch.randn(2, 3, 7, 6, 8, dtype=torch.float64, device=device)
    want = theirs(x)
    assert _same(ours(x), want)
    model = torch.nn.Sequential(TORCH_MODULES[name]())
    medkern.patch(model)
    assert type(model[0]) is ours_cls and repr(model[0]) == repr(theirs)
    assert _same(model(x), want)


def test_torch_compile_of_a_patched_3d_model(device):
    torch._dynamo.reset()
    model = medkern.patch(torch.nn.Sequential(
        torch.nn.Conv3d(2, 4, 3, padding=1), torch.nn.MaxPool3d(2), torch.nn.AvgPool3d(3, 1, 1),
        torch.nn.AdaptiveMaxPool3d((2, 3, 2)), torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten())).to(device)
    assert type(model[1]) is medkern.nn.MaxPool3d and type(model[4]) is medkern.nn.AdaptiveAvgPool3d
    x = torch.randn(2, 2, 8, 10, 9, device=device)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    y = compiled(x)
    assert rel_err(y, model(x)) < 1e-6
    y.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(x).sum().backward()
    assert all(rel_err(a, p.grad) < 1e-6 for a, p in zip(grads, model.parameters()))


def test_volume_max_backward_runs_on_the_plane_kernel(monkeypatch):
    """The contract's max backward of a volume: max_pool2d_backward on (N, C, 1, D*H*W) views."""
    seen = []
    reference_pool = medkern.backends.family("pool", "cpu", "reference")
    original = reference_pool.max_pool2d_backward
    monkeypatch.setattr(reference_pool, "max_pool2d_backward",
                        lambda g, i, gx: seen.append((g.shape, gx.shape)) or original(g, i, gx))
    x = torch.randn(1, 2, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    with medkern.backends.use("reference"):
        medkern.ops.max_pool3d(x, 2, return_indices=True)[0].sum().backward()
    assert seen == [((1, 2, 1, 2 * 2 * 3), (1, 2, 1, 4 * 5 * 6))]
