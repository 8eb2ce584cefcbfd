"""3-d convolution kernels: every backend's conv3d entries (forward with its fused epilogue, grad_input,
grad_weight, and the volume's bias gradient) against float64 torch, called directly with NaN-poisoned outputs;
every native CPU path the planner may take, forced; the planner's choices; and Winograd's accuracy."""
import pytest
import torch
import torch.nn.functional as F

import medkern
from conftest import TOL, backend_devices, rel_err
from medkern._geometry import ACTIVATIONS, ConvParams

from .cases3d import CASES3D, HAND_PICKED, VolumeCase, case3d, reference3d


@pytest.fixture(params=backend_devices())
def kernels(request):
    name, device = request.param
    return medkern.backends.family("conv", device, name), device


def poisoned(shape, dtype, device):
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


def run_kernels(k, case: VolumeCase, x, w, b, dy):
    """The three maps and the bias gradient of one backend family, on poisoned outputs."""
    y = poisoned((case.N, case.K, *case.out_size), x.dtype, x.device)
    k.conv3d_forward(x, w, b, y, case.params)
    dx = poisoned(x.shape, x.dtype, x.device)
    k.conv3d_grad_input(dy, w, dx, case.params)
    dw = poisoned(w.shape, x.dtype, x.device)
    k.conv3d_grad_weight(dy, x, dw, case.params)
    db = None
    if b is not None:  # the contract's volume bias gradient: conv2d_grad_bias of a (N, K, O*P, Q) view
        db = poisoned(b.shape, x.dtype, x.device)
        k.conv2d_grad_bias(dy.reshape(case.N, case.K, -1, dy.shape[-1]), db)
    return y, dx, dw, db


def assert_matches(got, want, tol):
    for name, g, r in zip(("forward", "grad_input", "grad_weight", "grad_bias"), got, want):
        if r is not None:
            assert rel_err(g, r) < tol, name


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES3D, ids=lambda c: c.id())
def test_conv3d_kernels_match_float64_torch(kernels, case, dtype):
    k, device = kernels
    x, w, b, dy = case.tensors(dtype, device)
    assert_matches(run_kernels(k, case, x, w, b, dy), reference3d(case, x, w, b, dy), TOL[dtype])


def _plan(case, direction):
    return medkern.ops.conv_plan(case.input_shape, case.weight_shape, stride=case.stride, padding=case.padding,
                                 dilation=case.dilation, groups=case.groups, direction=direction)


@pytest.mark.parametrize("case", [c for c in HAND_PICKED if not any(c.extra)], ids=lambda c: c.id())
def test_planner_takes_the_named_paths(case):
    got = tuple(_plan(case, d) for d in ("forward", "grad_input", "grad_weight"))
    assert got == case.plans


@pytest.mark.parametrize("case", [c for c in HAND_PICKED if not any(c.extra)], ids=lambda c: c.id())
def test_every_applicable_native_path_matches(case):
    """Each path the planner may choose for a volume, forced, against float64 torch."""
    k = medkern.backends.family("conv", "cpu", "native")
    x, w, b, dy = case.tensors(torch.float64)
    want = reference3d(case, x, w, b, dy)
    kw = dict(stride=case.stride, padding=case.padding, dilation=case.dilation, groups=case.groups,
              dtype=torch.float64)
    for index, direction in enumerate(("forward", "grad_input", "grad_weight")):
        paths = medkern.ops.conv_paths(case.input_shape, case.weight_shape, direction=direction, **kw)
        assert paths, direction
        for path in paths:
            with medkern.ops.force_conv_path(path):
                got = run_kernels(k, case, x, w, b, dy)
            assert rel_err(got[index], want[index]) < TOL[torch.float64], (direction, path)


@pytest.mark.parametrize("threads", [1, 2])
def test_native_grad_weight_is_deterministic(threads):
    from medkern import _native

    C = _native.require_cpu()
    before = C.num_threads()
    C.set_num_threads(threads)
    try:
        case = case3d("per_image_gemm_long_reduction")
        x, w, b, dy = case.tensors(torch.float32)
        k = medkern.backends.family("conv", "cpu", "native")
        runs = [run_kernels(k, case, x, w, b, dy)[2] for _ in range(3)]
        assert all(torch.equal(runs[0], r) for r in runs[1:])
    finally:
        C.set_num_threads(before)


@pytest.mark.parametrize("activation, slope", [("relu", 0.0), ("leaky_relu", 0.2), ("leaky_relu", 0.0)],
                         ids=["relu", "leaky_0.2", "leaky_0"])
@pytest.mark.parametrize("case", [case3d(n) for n in ("basic_3x3x3", "anisotropic_strided_dilated_grouped",
                                                      "depth_one", "winograd_3x3x3")], ids=lambda c: c.id())
def test_conv3d_forward_epilogue(kernels, case, activation, slope):
    """act(conv + bias) fused into the store; a bias of -inf and NaN checks relu(-inf) = 0 and NaN."""
    k, device = kernels
    x, w, _, dy = case.tensors(torch.float64, device)
    b = torch.randn(w.shape[0], dtype=torch.float64, device=device)
    b[0], b[-1] = float("-inf"), float("nan")
    y_ref = reference3d(case, x, w, b, dy)[0]
    y_ref = torch.relu(y_ref) if activation == "relu" else F.leaky_relu(y_ref, slope)
    y = poisoned(y_ref.shape, torch.float64, device)
    k.conv3d_forward(x, w, b, y, case.params._replace(activation=ACTIVATIONS[activation], negative_slope=slope))
    y = y.cpu()
    finite = torch.isfinite(y_ref)
    assert torch.equal(y.isnan(), y_ref.isnan()), "NaN positions"
    assert torch.equal(y[torch.isinf(y_ref)], y_ref[torch.isinf(y_ref)]), "infinities"
    assert rel_err(y[finite], y_ref[finite]) < TOL[torch.float64]
    if activation == "relu":
        assert (y[:, 0] == 0).all(), "relu(-inf) must be 0"


def test_non_finite_values_stay_in_their_batch_element(kernels):
    """Sums start from zero, not from some element times zero (inf * 0 is NaN)."""
    k, device = kernels
    p = ConvParams((1, 1, 1), (1, 1, 1), (1, 1, 1), 1)
    x = torch.ones(2, 3, 4, 5, 6, dtype=torch.float64, device=device)
    x[0, 0, 0, 0, 0] = float("inf")
    x[0, 1, 2, 3, 3] = float("nan")
    w = torch.ones(2, 3, 3, 3, 3, dtype=torch.float64, device=device)
    y = poisoned((2, 2, 4, 5, 6), torch.float64, device)
    k.conv3d_forward(x, w, None, y, p)
    assert torch.isfinite(y[1]).all() and (y[1, :, 1, 2, 2] == 81).all()
    dy = torch.ones_like(y)
    dy[0, 0, 0, 0, 0] = float("inf")
    dw = poisoned(w.shape, torch.float64, device)
    k.conv3d_grad_weight(dy[1:], x[1:], dw, p)
    assert torch.isfinite(dw).all()
    dx = poisoned(x.shape, torch.float64, device)
    k.conv3d_grad_input(dy, w, dx, p)
    assert torch.isfinite(dx[1]).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_winograd_kernels_transformed_ahead_give_the_same_bits(dtype):
    """A compiled network transforms the 3x3x3 kernels once (conv2d_pack_weight, layout winograd3d_f2x3): the
    forward then reads them and gives exactly the answer of a call that transforms them itself; a packing that
    does not fit the weight is refused."""
    from medkern._native import require_cpu
    from torch.utils.dlpack import to_dlpack as dl
    C = require_cpu()
    case = case3d("winograd_3x3x3")
    x, w, b, _ = case.tensors(dtype)
    stride, padding, dilation = case.params.stride, case.params.padding, case.params.dilation
    args = (*stride, *padding, *dilation, case.params.groups, 0, ACTIVATIONS["relu"], 0.0)
    packed = torch.full((C.conv2d_packed_weight_numel(dl(w), 1, "winograd3d_f2x3"),), float("nan"), dtype=dtype)
    C.conv2d_pack_weight(dl(w), dl(packed), 1, "winograd3d_f2x3")
    with medkern.ops.force_conv_path("winograd3d_f2x3"):
        own, ahead = (poisoned((case.N, case.K, *case.out_size), dtype, "cpu") for _ in range(2))
        C.conv3d_forward(dl(x), dl(w), dl(b), dl(own), *args)
        C.conv3d_forward(dl(x), dl(w), dl(b), dl(ahead), *args, None, None, None, False, dl(packed), "winograd3d_f2x3")
    assert torch.equal(own, ahead)
    with pytest.raises(ValueError, match="packed_weight"):
        C.conv3d_forward(dl(x), dl(w), dl(b), dl(ahead), *args, None, None, None, False, dl(packed[:-1]),
                         "winograd3d_f2x3")
    with pytest.raises(ValueError, match="winograd3d_f2x3 packs 3x3x3"):
        C.conv2d_packed_weight_numel(dl(w[:, :, :2].contiguous()), 1, "winograd3d_f2x3")
    with pytest.raises(ValueError, match="volume's kernel packs only"):
        C.conv2d_packed_weight_numel(dl(w), 1, "gemm_weight_panels")


def test_packed_kernels_move_the_planner():
    """Kernels transformed ahead make Winograd pay on smaller volumes (7^3 at 256 channels, batch 2), where the
    direct kernel does not take them; the direct kernel (packed too) takes the small volumes at batch 1, 4^3 and the
    strided layers, and leaves to Winograd the large maps of many channels."""
    from medkern.ops import conv_plan
    assert conv_plan((2, 256, 7, 7, 7), (256, 256, 3, 3, 3), padding=1, weights_packed=True) == "winograd3d_f2x3"
    assert conv_plan((2, 256, 7, 7, 7), (256, 256, 3, 3, 3), padding=1) != "winograd3d_f2x3"
    assert conv_plan((1, 256, 7, 7, 7), (256, 256, 3, 3, 3), padding=1, weights_packed=True) == "direct"
    assert conv_plan((1, 512, 4, 4, 4), (512, 512, 3, 3, 3), padding=1, weights_packed=True) == "direct"
    assert conv_plan((1, 64, 28, 28, 28), (128, 64, 3, 3, 3), stride=2, padding=1, weights_packed=True) == "direct"
    assert conv_plan((1, 64, 28, 28, 28), (64, 64, 3, 3, 3), padding=1, weights_packed=True) == "winograd3d_f2x3"
    assert conv_plan((1, 512, 4, 4, 4), (512, 512, 3, 3, 3), padding=1) != "direct"  # only with packed weights
