"""Child process of test_fuzzed_binding_never_crashes: hypothesis-generated operands for the matmul
binding (any shape, dtype, stride, sign of stride, read-only, aliasing). Every call must return or raise
a Python exception, and a call that returns must have computed a @ b; a segfault ends this process with
a signal, which the parent test reports."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medkern import _native

C = _native.require_cpu()
EXPECTED = (TypeError, ValueError, BufferError)
count = {"n": 0}


@st.composite
def operands(draw):
    shape = draw(st.lists(st.integers(0, 9), min_size=0, max_size=3))
    a = np.random.default_rng(draw(st.integers(0, 99))).standard_normal(shape).astype(
        draw(st.sampled_from([np.float32, np.float64, np.int64, np.float16])))
    view = draw(st.sampled_from(["plain", "transposed", "step", "reversed"]))
    if a.ndim == 2 and view == "transposed":
        a = a.T
    elif a.ndim and view == "step":
        a = a[..., ::2]
    elif a.ndim and view == "reversed":
        a = a[::-1]
    if draw(st.booleans()):
        a.flags.writeable = False
    return a


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(a=operands(), b=operands(), out=operands() | st.sampled_from([None, "a", "b", 3]))
def fuzz(a, b, out):
    count["n"] += 1
    out = {"a": a, "b": b}.get(out, out) if isinstance(out, str) else out
    try:
        C.matmul(a, b, out)
    except EXPECTED:
        return
    want = a.astype(np.float64) @ b.astype(np.float64)
    assert np.allclose(out, want, rtol=1e-4, atol=1e-4), (a.shape, b.shape)


if __name__ == "__main__":
    fuzz()
    print(f"{count['n']} examples, no crash")
