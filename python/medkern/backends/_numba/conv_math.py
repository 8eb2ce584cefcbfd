"""Per-axis conv2d index arithmetic (see backends/CONTRACT.md), written once for numba_cpu and numba_cuda.

Along one axis (rows or columns), output o reads input position ``o*stride + offset`` through a tap,
whose offset ``tap*dilation - pad`` folds in the leading padding; positions outside [0, size) are
padding. The output extent n_out is passed in (the output array's), which makes trailing padding
implicit.

Unlike pool_math and gan_math these are not built per target with ``cuda.jit(device=True)``: numba
compiles a device function for the current device, so cuda.compile_ptx could not build the conv kernels
on a machine without a GPU driver (tests/conv/test_numba_cudasim.py does). ``inline="always"`` splices
them into the caller's numba IR before typing, so a CUDA kernel compiles them for its own target."""
import numba

_inline = numba.njit(inline="always")


@_inline
def tap_offset(tap, dilation, pad):
    return tap * dilation - pad


@_inline
def position(o, offset, stride):
    """The input position output o reads through the tap of this offset."""
    return o * stride + offset


@_inline
def span(offset, stride, size, n_out):
    """[lo, hi): the outputs o in [0, n_out) whose input position lies in [0, size)."""
    lo = -(offset // stride)  # ceil(-offset / stride)
    hi = (size - 1 - offset) // stride + 1
    # not min/max, which the CUDA target compiles as device functions (see above)
    if lo < 0:
        lo = 0
    if hi > n_out:
        hi = n_out
    return lo, hi


@_inline
def reader(i, offset, stride, n_out):
    """The output whose input position is i, or -1 where none is (at most one: outputs are stride
    apart)."""
    t = i - offset
    if t < 0 or t % stride != 0 or t // stride >= n_out:
        return -1
    return t // stride
