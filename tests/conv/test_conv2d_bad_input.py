"""Bad input to conv2d gets a clear Python exception naming the argument, from the op and from the
bindings alike; a hypothesis fuzz of the bindings runs in a child process so that a crash fails the
test instead of killing the run."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import medkern
from medkern import _native

x = torch.randn(2, 4, 8, 8)
w = torch.randn(6, 4, 3, 3)


@pytest.mark.parametrize("call, exc, needle", [
    (lambda: medkern.ops.conv2d(x.numpy(), w), TypeError, "input"),
    (lambda: medkern.ops.conv2d(x.int(), w), TypeError, "input"),
    (lambda: medkern.ops.conv2d(x.half(), w.half()), TypeError, "input"),
    (lambda: medkern.ops.conv2d(x, w.double()), TypeError, "weight"),
    (lambda: medkern.ops.conv2d(x, w, torch.randn(6, dtype=torch.float64)), TypeError, "bias"),
    (lambda: medkern.ops.conv2d(x[0, 0], w), ValueError, "input"),
    (lambda: medkern.ops.conv2d(x, w[0]), ValueError, "weight"),
    (lambda: medkern.ops.conv2d(x, w, torch.randn(5)), ValueError, "bias"),
    (lambda: medkern.ops.conv2d(x, torch.randn(6, 3, 3, 3)), ValueError, "weight"),
    (lambda: medkern.ops.conv2d(x, w, groups=3), ValueError, "groups"),
    (lambda: medkern.ops.conv2d(x, w, groups=0), ValueError, "groups"),
    (lambda: medkern.ops.conv2d(x, w, groups=1.0), TypeError, "groups"),
    (lambda: medkern.ops.conv2d(x, w, stride=0), ValueError, "stride"),
    (lambda: medkern.ops.conv2d(x, w, stride=(1, 2, 3)), ValueError, "stride"),
    (lambda: medkern.ops.conv2d(x, w, stride=True), TypeError, "stride"),
    (lambda: medkern.ops.conv2d(x, w, dilation=-1), ValueError, "dilation"),
    (lambda: medkern.ops.conv2d(x, w, padding=-1), ValueError, "padding"),
    (lambda: medkern.ops.conv2d(x, w, padding="full"), ValueError, "padding"),
    (lambda: medkern.ops.conv2d(x, w, padding="same", stride=2), ValueError, "padding"),
    (lambda: medkern.ops.conv2d(x, torch.randn(6, 4, 9, 9)), ValueError, "input"),
    (lambda: medkern.ops.conv2d(torch.randn(2, 4, 0, 8), w), ValueError, "input"),
    (lambda: medkern.ops.conv2d(x, torch.randn(0, 4, 3, 3)), ValueError, "weight"),
    (lambda: medkern.ops.conv2d(x.to("meta"), w.to("meta")), ValueError, "input"),
    (lambda: medkern.ops.conv2d(x, w.to("meta")), ValueError, "weight"),
])
def test_op_rejects_bad_input(call, exc, needle):
    with pytest.raises(exc, match=needle):
        call()


def test_unknown_and_unavailable_backends_raise():
    with pytest.raises(ValueError, match="backend"):
        with medkern.backends.use("tensorflow"):
            pass
    with pytest.raises(medkern.backends.BackendUnavailableError, match="cuda"):
        medkern.backends.family("conv", "cuda", "cupy" if not torch.cuda.is_available() else "nonexistent")


C = _native.require_cpu()
geom = (1, 1, 1, 1, 1, 1, 1)


@pytest.mark.parametrize("args, exc, needle", [
    ((np.zeros((2, 4, 8, 8), np.float32), np.zeros((6, 4, 3, 3), np.float64), None,
      np.zeros((2, 6, 8, 8), np.float32), *geom), TypeError, "weight"),
    ((np.zeros((2, 4, 8, 8), np.int32), np.zeros((6, 4, 3, 3), np.int32), None,
      np.zeros((2, 6, 8, 8), np.int32), *geom), TypeError, "input"),
    (([1.0], np.zeros((6, 4, 3, 3), np.float32), None, np.zeros((2, 6, 8, 8), np.float32), *geom), TypeError, "input"),
    ((np.zeros((2, 4, 8, 8), np.float32)[:, :, ::2], np.zeros((6, 4, 3, 3), np.float32), None,
      np.zeros((2, 6, 4, 8), np.float32), *geom), ValueError, "contiguous"),
    ((np.zeros((2, 4, 8, 8), np.float32), np.zeros((6, 4, 3, 3), np.float32), None,
      np.zeros((2, 6, 9, 8), np.float32)[:, :, :7], *geom), ValueError, "out"),
    ((np.zeros((2, 4, 8, 8), np.float32), np.zeros((6, 4, 3, 3), np.float32), np.zeros(5, np.float32),
      np.zeros((2, 6, 8, 8), np.float32), *geom), ValueError, "bias"),
    ((np.zeros((2, 4, 8, 8), np.float32), np.zeros((6, 4, 3, 3), np.float32), None,
      np.zeros((2, 6, 8, 8), np.float32), 0, 1, 1, 1, 1, 1, 1), ValueError, "stride"),
    ((np.zeros((2, 4, 8, 8), np.float32), np.zeros((6, 4, 3, 3), np.float32), None,
      np.zeros((2, 6, 8, 8), np.float32), 1, 1, 1, 1, 1, 1, 3), ValueError, "groups"),
])
def test_binding_rejects_bad_input(args, exc, needle):
    with pytest.raises(exc, match=needle):
        C.conv2d_forward(*args)


def _fused_args(residual=None, packed=None, layout="gemm_weight_panels"):
    x, w = np.zeros((2, 4, 8, 8), np.float32), np.zeros((6, 4, 3, 3), np.float32)
    return (x, w, None, np.zeros((2, 6, 8, 8), np.float32), *geom, 0, 1, 0.0, residual, packed, layout)


def _packed(weight, groups=1, layout="gemm_weight_panels"):
    out = np.zeros(C.conv2d_packed_weight_numel(weight, groups, layout), weight.dtype)
    C.conv2d_pack_weight(weight, out, groups, layout)
    return out


@pytest.mark.parametrize("args, exc, needle", [
    (_fused_args(residual=np.zeros((2, 6, 8, 7), np.float32)), ValueError, "residual"),
    (_fused_args(residual=np.zeros((2, 6, 8, 8), np.float64)), TypeError, "residual"),
    (_fused_args(packed=np.zeros(10, np.float32)), ValueError, "packed_weight"),
    (_fused_args(packed=_packed(np.zeros((6, 4, 3, 3)))), TypeError, "packed_weight"),
    (_fused_args(packed=_packed(np.zeros((8, 4, 3, 3), np.float32))[:, None]), ValueError, "packed_weight"),
    (_fused_args(packed=_packed(np.zeros((6, 4, 3, 3), np.float32)), layout="grid"), ValueError, "packed_layout"),
    (_fused_args(packed=_packed(np.zeros((6, 4, 3, 3), np.float32)), layout="winograd_f2x3_panels"), ValueError,
     "packed_weight"),
])
def test_fused_binding_arguments_are_checked(args, exc, needle):
    with pytest.raises(exc, match=needle):
        C.conv2d_forward(*args)


def test_residual_may_not_alias_the_output():
    out = np.zeros((2, 6, 8, 8), np.float32)
    with pytest.raises(ValueError, match="residual"):
        C.conv2d_forward(np.zeros((2, 4, 8, 8), np.float32), np.zeros((6, 4, 3, 3), np.float32), None, out, *geom,
                         0, 1, 0.0, out, None)


@pytest.mark.parametrize("weight, out, groups, layout, exc, needle", [
    (np.zeros((6, 4, 3, 3), np.float32), np.zeros(5, np.float32), 1, "gemm_weight_panels", ValueError, "packed_weight"),
    (np.zeros((6, 4, 3, 3), np.float32), np.zeros(1000, np.float32), 4, "gemm_weight_panels", ValueError, "groups"),
    (np.zeros((6, 4, 3), np.float32), np.zeros(1000, np.float32), 1, "gemm_weight_panels", ValueError, "weight"),
    (np.zeros((6, 4, 3, 3), np.float32), np.zeros(1000, np.float32), 1, "gemm", ValueError, "packed_layout"),
    (np.zeros((6, 4, 5, 5), np.float32), np.zeros(1000, np.float32), 1, "winograd_f2x3_panels", ValueError, "3x3"),
    (np.zeros((6, 2, 3, 3), np.float32), np.zeros(1000, np.float32), 2, "winograd_f2x3_panels", ValueError, "group"),
])
def test_pack_weight_rejects_bad_input(weight, out, groups, layout, exc, needle):
    with pytest.raises(exc, match=needle):
        C.conv2d_pack_weight(weight, out, groups, layout)


@pytest.mark.parametrize("groups, shape", [(1, (2, 4, 9, 7)), (2, (1, 4, 5, 6)), (1, (3, 4, 3, 3)), (1, (1, 4, 8, 8))])
@pytest.mark.parametrize("path", ["direct", "gemm_weight_panels", "winograd_f2x3_panels", ""],
                         ids=["direct", "panels", "winograd", "planned"])
def test_fused_forward_matches_float64(groups, shape, path):
    """act(conv + bias + residual) with prepacked weights, on the paths that read them and on whatever the planner
    picks (where the residual may follow in a pass of its own, and the packing is not read)."""
    if path == "winograd_f2x3_panels" and groups > 1:
        pytest.skip("Winograd runs one group")
    rng = np.random.default_rng(groups)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((6, 4 // groups, 3, 3))
    b, r = rng.standard_normal(6), rng.standard_normal((shape[0], 6, shape[2], shape[3]))
    out = np.full(r.shape, np.nan)
    layout = path or "gemm_weight_panels"
    with medkern.ops.force_conv_path(path):
        C.conv2d_forward(x, w, b, out, 1, 1, 1, 1, 1, 1, groups, 0, 2, 0.3, r, _packed(w, groups, layout), layout)
    t = torch.from_numpy
    want = torch.nn.functional.leaky_relu(torch.nn.functional.conv2d(t(x), t(w), t(b), 1, 1, 1, groups) + t(r), 0.3)
    np.testing.assert_allclose(out, want.numpy(), rtol=1e-12, atol=1e-12)


def test_binding_refuses_read_only_output():
    out = np.zeros((2, 6, 8, 8), np.float32)
    out.flags.writeable = False
    with pytest.raises((ValueError, BufferError)):
        C.conv2d_forward(np.zeros((2, 4, 8, 8), np.float32), np.zeros((6, 4, 3, 3), np.float32), None, out, *geom)


def test_binding_reads_and_writes_numpy_without_copies():
    rng = np.random.default_rng(0)
    xn, wn = rng.standard_normal((2, 4, 8, 8)), rng.standard_normal((6, 4, 3, 3))
    out = np.full((2, 6, 8, 8), np.nan)
    C.conv2d_forward(xn, wn, None, out, *geom)  # written in place: the kernel saw out's own memory
    want = torch.nn.functional.conv2d(torch.from_numpy(xn), torch.from_numpy(wn), padding=1).numpy()
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)


def test_fuzzed_bindings_never_crash():
    script = Path(__file__).with_name("_fuzz_bindings.py")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"fuzz child exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "examples" in proc.stdout


def test_remembered_geometry_still_rejects_lookalikes():
    """conv2d remembers validated geometries; a float or bool equal to an accepted int must still fail."""
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    medkern.ops.conv2d(x, w, stride=1, padding=1, dilation=1, groups=1)
    for kwargs in ({"stride": 1.0}, {"stride": True}, {"padding": 1.0}, {"dilation": (1, True)}, {"groups": True}):
        with pytest.raises(TypeError):
            medkern.ops.conv2d(x, w, **{"stride": 1, "padding": 1, "dilation": 1, "groups": 1, **kwargs})
    with pytest.raises(ValueError, match="bias"):  # a new bias shape is a new question
        medkern.ops.conv2d(x, w, torch.randn(4), stride=1, padding=1)
