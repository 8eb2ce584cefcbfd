"""Child process of test_fuzzed_bindings_never_crash: throws hypothesis-generated arrays and geometry at
the conv2d and conv3d bindings and the volume pooling ones. Every call must return or raise a Python exception; a segfault or abort ends this
process with a signal, which the parent test reports."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medkern import _native

C = _native.require_cpu()
EXPECTED = (TypeError, ValueError, BufferError, OverflowError, MemoryError)

dims = st.integers(-2, 6)
shapes = st.lists(dims, min_size=0, max_size=6)
dtypes = st.sampled_from([np.float32, np.float64, np.int32, np.float16])


@st.composite
def arrays(draw):
    shape = draw(shapes)
    if any(n < 0 for n in shape):
        return draw(st.sampled_from([None, 3, "x", [1.0, 2.0]]))
    a = np.ones(shape, dtype=draw(dtypes))
    if a.ndim and draw(st.booleans()):
        a = a[..., ::2]  # non-contiguous view
    if draw(st.booleans()):
        a.flags.writeable = False
    return a


ints = st.integers(-3, 5) | st.sampled_from([2**31, 2**62, -(2**62)])
count = {"n": 0}


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(fn=st.sampled_from(["forward", "fused_forward", "pack_weight", "grad_input", "grad_weight", "grad_bias",
                           "forward3d", "grad_input3d", "grad_weight3d", "max_pool3d", "avg_pool3d", "avg_pool3d_backward",
                           "adaptive_pool3d"]),
       a=arrays(), b=arrays(), c=arrays(), d=arrays() | st.none(), e=arrays() | st.none(),
       geom=st.lists(ints, min_size=12, max_size=12),
       layout=st.sampled_from(["direct", "gemm_weight_panels", "winograd_f2x3_panels", "winograd3d_f2x3", "grid", ""]))
def fuzz(fn, a, b, c, d, e, geom, layout):
    count["n"] += 1
    planar, volume = geom[:7], geom[:10]  # per axis stride, padding, dilation, then groups
    window = [geom[0:3], geom[3:6], geom[6:9]]
    try:
        if fn == "forward":
            C.conv2d_forward(a, b, d, c, *planar)
        elif fn == "fused_forward":  # d: the residual, e: packed weights
            C.conv2d_forward(a, b, None, c, *planar, 0, 1, 0.0, d, e, layout)
        elif fn == "pack_weight":
            C.conv2d_pack_weight(a, c, geom[6], layout)
        elif fn == "grad_input":
            C.conv2d_grad_input(a, b, c, *planar)
        elif fn == "grad_weight":
            C.conv2d_grad_weight(a, b, c, *planar)
        elif fn == "grad_bias":
            C.conv2d_grad_bias(a, c)
        elif fn == "forward3d":  # d: the residual, e: the input scale (and shift), or the packed weights
            if geom[11] % 3 == 2:
                C.conv3d_forward(a, b, None, c, *volume, 0, geom[10] % 3, 0.1, d, None, None, False, e, layout)
            else:
                C.conv3d_forward(a, b, None, c, *volume, 0, geom[10] % 3, 0.1, d, e, e, bool(geom[11] % 2))
        elif fn == "grad_input3d":
            C.conv3d_grad_input(a, b, c, *volume)
        elif fn == "grad_weight3d":
            C.conv3d_grad_weight(a, b, c, *volume)
        elif fn == "max_pool3d":
            C.max_pool3d_forward(a, c, d, *window, geom[9:12])
        elif fn == "avg_pool3d":
            C.avg_pool3d_forward(a, c, *window, bool(geom[9] % 2), geom[10])
        elif fn == "avg_pool3d_backward":
            C.avg_pool3d_backward(a, c, *window, bool(geom[9] % 2), geom[10])
        else:
            C.adaptive_max_pool3d_forward(a, c, d)
    except EXPECTED:
        pass


if __name__ == "__main__":
    fuzz()
    print(f"{count['n']} examples, no crash")
