"""medkern.ops pooling as a PyTorch user meets it: torch's functional signatures in 1-D and 2-D, every
option, NaN/-inf behaviour, channels_last and unbatched inputs, gradients to second order, opcheck and
torch.compile."""
import pytest
import torch
import torch.nn.functional as F

import medkern
from conftest import backend_devices, rel_err

from .cases import ADAPTIVE, CASES


@pytest.fixture(params=backend_devices())
def device(request):
    name, dev = request.param
    with medkern.backends.use(name):
        yield dev


def _same(got, want):
    if isinstance(want, tuple):
        return all(_same(g, w) for g, w in zip(got, want))
    if want.dtype == torch.int64:
        return torch.equal(got.cpu(), want.cpu())
    return torch.equal(got.isnan().cpu(), want.isnan().cpu()) and \
        torch.allclose(got.detach().cpu().nan_to_num(), want.detach().cpu().nan_to_num(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id())
def test_max_pool2d_matches_torch(device, case):
    x = case.input(torch.float64, device)
    kw = dict(kernel_size=case.kernel, stride=case.stride, padding=case.padding, dilation=case.dilation,
              ceil_mode=case.ceil_mode, return_indices=True)
    assert _same(medkern.ops.max_pool2d(x, **kw), F.max_pool2d(x, **kw))


@pytest.mark.parametrize("case", [c for c in CASES if c.H == 1 or c.N == 1][:8], ids=lambda c: c.id())
def test_max_pool1d_matches_torch(device, case):
    x = case.input(torch.float64, device)[:, :, 0]
    kw = dict(kernel_size=case.kernel[1], stride=case.stride[1], padding=case.padding[1], dilation=case.dilation[1],
              ceil_mode=case.ceil_mode, return_indices=True)
    assert _same(medkern.ops.max_pool1d(x, **kw), F.max_pool1d(x, **kw))
    assert _same(medkern.ops.max_pool1d(x[0], **kw), F.max_pool1d(x[0], **kw))  # unbatched


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", [c for c in CASES if c.fits_avg()], ids=lambda c: c.id())
def test_avg_pools_match_torch(device, case, count_include_pad):
    x = case.input(torch.float64, device, specials=False)
    kw = dict(kernel_size=case.kernel, stride=case.stride, padding=case.padding, ceil_mode=case.ceil_mode,
              count_include_pad=count_include_pad)
    assert _same(medkern.ops.avg_pool2d(x, **kw), F.avg_pool2d(x, **kw))
    assert _same(medkern.ops.avg_pool2d(x, divisor_override=3, **kw), F.avg_pool2d(x, divisor_override=3, **kw))
    kw1 = {k: (v[1] if isinstance(v, tuple) else v) for k, v in kw.items()}
    assert _same(medkern.ops.avg_pool1d(x[:, :, 0], **kw1), F.avg_pool1d(x[:, :, 0], **kw1))


@pytest.mark.parametrize("shape, size", ADAPTIVE, ids=str)
def test_adaptive_pools_match_torch(device, shape, size):
    x = torch.randn(shape, dtype=torch.float64, device=device).round()
    for ours, theirs, arg in [(medkern.ops.adaptive_avg_pool2d, F.adaptive_avg_pool2d, size),
                              (medkern.ops.adaptive_avg_pool1d, F.adaptive_avg_pool1d, size[1])]:
        inp = x if ours is medkern.ops.adaptive_avg_pool2d else x[:, :, 0]
        assert _same(ours(inp, arg), theirs(inp, arg))
    assert _same(medkern.ops.adaptive_max_pool2d(x, size, True), F.adaptive_max_pool2d(x, size, True))
    assert _same(medkern.ops.adaptive_max_pool1d(x[:, :, 0], size[1], True),
                 F.adaptive_max_pool1d(x[:, :, 0], size[1], True))
    assert _same(medkern.ops.adaptive_avg_pool2d(x, (None, size[1])), F.adaptive_avg_pool2d(x, (None, size[1])))


def test_nan_and_infinities_behave_like_torch():
    x = torch.tensor([[[[1.0, float("nan"), 3.0, float("nan")], [float("-inf")] * 4,
                        [2.0, 2.0, float("inf"), 1.0], [float("-inf"), 0.0, -1.0, float("nan")]]]])
    for kw in [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=(1, 4))]:
        assert _same(medkern.ops.max_pool2d(x, return_indices=True, **kw), F.max_pool2d(x, return_indices=True, **kw))
    assert _same(medkern.ops.adaptive_max_pool2d(x, 2, True), F.adaptive_max_pool2d(x, 2, True))


def test_channels_last_and_non_contiguous_inputs():
    x = torch.randn(2, 5, 12, 10, dtype=torch.float64)
    for inp in (x.to(memory_format=torch.channels_last), x[:, :, ::2], x.transpose(2, 3)):
        assert _same(medkern.ops.max_pool2d(inp, 3, 2, 1, return_indices=True), F.max_pool2d(inp, 3, 2, 1, return_indices=True))
        assert _same(medkern.ops.avg_pool2d(inp, 2), F.avg_pool2d(inp, 2))
        assert _same(medkern.ops.adaptive_avg_pool2d(inp, 1), F.adaptive_avg_pool2d(inp, 1))


GRAD_FNS = {
    "max2d": lambda x: medkern.ops.max_pool2d(x, 3, 2, 1, dilation=(1, 2), ceil_mode=True),
    "max1d": lambda x: medkern.ops.max_pool1d(x[:, :, 0], 3, 2, 1),
    "avg2d": lambda x: medkern.ops.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
    "avg2d_div": lambda x: medkern.ops.avg_pool2d(x, (2, 3), 1, divisor_override=4),
    "avg1d": lambda x: medkern.ops.avg_pool1d(x[:, :, 1], 3, 2, 1),
    "adaptive_avg": lambda x: medkern.ops.adaptive_avg_pool2d(x, (3, 4)),
    "adaptive_avg1d": lambda x: medkern.ops.adaptive_avg_pool1d(x[:, :, 2], 5),
    "adaptive_max": lambda x: medkern.ops.adaptive_max_pool2d(x, (3, 4)),
}


@pytest.mark.parametrize("name", list(GRAD_FNS))
def test_gradcheck_and_gradgradcheck(device, name):
    g = torch.Generator().manual_seed(5)
    # distinct values keep max pooling differentiable at the sample point
    x = torch.randperm(2 * 6 * 7, generator=g).double().view(1, 2, 6, 7).div(10).to(device).requires_grad_()
    assert torch.autograd.gradcheck(GRAD_FNS[name], (x,))
    assert torch.autograd.gradgradcheck(GRAD_FNS[name], (x,))


def test_opcheck():
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64, requires_grad=True)
    ops = torch.ops.medkern
    y, idx = ops.max_pool2d_with_indices(x, [3, 2], [2, 2], [1, 1], [1, 2], True)
    g = torch.randn_like(y, requires_grad=True)
    samples = [
        (ops.max_pool2d, (x, [3, 2], [2, 2], [1, 1], [1, 2], True)),
        (ops.max_pool2d_with_indices, (x, [3, 2], [2, 2], [1, 1], [1, 2], True)),
        (ops.max_pool2d_backward, (g, idx, list(x.shape))),
        (ops.max_pool2d_backward_from_input, (g, x.detach(), [3, 2], [2, 2], [1, 1], [1, 2], True)),
        (ops.avg_pool2d, (x, [3, 3], [2, 2], [1, 1], True, False, None)),
        (ops.avg_pool2d_backward, (torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True), list(x.shape),
                                   [3, 3], [2, 2], [1, 1], True, False, None)),
        (ops.adaptive_avg_pool2d, (x, [3, 4])),
        (ops.adaptive_avg_pool2d_backward, (torch.randn(2, 3, 3, 4, dtype=torch.float64, requires_grad=True),
                                            list(x.shape))),
        (ops.adaptive_max_pool2d, (x, [3, 4])),
    ]
    for op, args in samples:
        torch.library.opcheck(op, args)


def test_torch_compile_fullgraph():
    torch._dynamo.reset()
    model = medkern.patch(torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.MaxPool2d(2), torch.nn.AvgPool2d(3, 1, 1),
        torch.nn.AdaptiveMaxPool2d((3, 3)), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()))
    x = torch.randn(2, 2, 12, 12)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    y = compiled(x)
    assert rel_err(y, model(x)) < 1e-6
    y.sum().backward()
    with torch.no_grad():
        assert rel_err(compiled(x), model(x)) < 1e-6


@pytest.mark.parametrize("call, exc, needle", [
    (lambda x: medkern.ops.max_pool2d(x, 2, padding=2), ValueError, "padding"),
    (lambda x: medkern.ops.max_pool2d(x, 0), ValueError, "kernel_size"),
    (lambda x: medkern.ops.max_pool2d(x, 2, stride=0), ValueError, "stride"),
    (lambda x: medkern.ops.max_pool2d(x, 2, stride=-1), ValueError, "stride"),
    (lambda x: medkern.ops.max_pool2d(x, 2, dilation=0), ValueError, "dilation"),
    (lambda x: medkern.ops.max_pool2d(x, 9), ValueError, "input"),
    (lambda x: medkern.ops.max_pool2d(x, (2, 2, 2)), ValueError, "kernel_size"),
    (lambda x: medkern.ops.max_pool2d(x, 2.5), TypeError, "kernel_size"),
    (lambda x: medkern.ops.max_pool2d(x.int(), 2), TypeError, "input"),
    (lambda x: medkern.ops.max_pool2d(x[0, 0, 0], 2), ValueError, "input"),
    (lambda x: medkern.ops.max_pool1d(x, 2), ValueError, "input"),
    (lambda x: medkern.ops.avg_pool2d(x, 3, padding=2), ValueError, "padding"),
    (lambda x: medkern.ops.avg_pool2d(x, 2, divisor_override=0), ValueError, "divisor_override"),
    (lambda x: medkern.ops.adaptive_avg_pool2d(x, 0), ValueError, "output_size"),
    (lambda x: medkern.ops.adaptive_avg_pool2d(x, (2, 2, 2)), ValueError, "output_size"),
    (lambda x: medkern.ops.adaptive_max_pool2d(x, "big"), TypeError, "output_size"),
    (lambda x: medkern.ops.adaptive_avg_pool2d(x[:, :0], 2), ValueError, "input"),
])
def test_bad_input_raises_naming_the_argument(call, exc, needle):
    with pytest.raises(exc, match=needle):
        call(torch.randn(2, 3, 6, 6))
