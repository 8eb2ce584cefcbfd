"""Per-element pooling arithmetic (see backends/CONTRACT.md), written once: ``compile_for(jit)`` builds
it for one target, with ``numba.njit`` for numba_cpu and ``cuda.jit(device=True)`` for numba_cuda (each
function calls the others through the closure, so they are compiled together).

Everything is written for volumes: x and dy are (volumes, D, H, W) / (volumes, O, P, Q) arrays, and a
2-d call passes planes as volumes of depth one (``backends._volumes``). Arguments per axis run depth,
height, width: kernel (kd, kh, kw), stride (sd, sh, sw), leading padding (pd, ph, pw), dilation (dd, dh,
dw); flat indices are ``(d*H + h)*W + w``, torch's convention."""
import math
from types import SimpleNamespace


def compile_for(jit) -> SimpleNamespace:
    @jit
    def running_max(m, best, v, k):
        """torch's max rule, one step of a scan in index order: v (at flat index k) replaces the running
        maximum m (at best) when it is larger or NaN, so the first of tied maxima wins and NaN propagates."""
        if v > m or v != v:
            return v, k
        return m, best

    @jit
    def first_tap(start, dilation):
        """The first position of start, start + dilation, ... that is not negative: where torch's index of a
        max window starts, even for a window with no tap inside the input."""
        while start < 0:
            start += dilation
        return start

    @jit
    def max_window(x, v, od, oh, ow, kd, kh, kw, sd, sh, sw, pd, ph, pw, dd, dh, dw):
        """torch's max pooling of one window: (value, flat index), by :func:`running_max`; an all -inf window
        reports its first in-range position."""
        D, H, W = x.shape[1], x.shape[2], x.shape[3]
        d0, h0, w0 = od * sd - pd, oh * sh - ph, ow * sw - pw
        m = -math.inf
        best = (first_tap(d0, dd) * H + first_tap(h0, dh)) * W + first_tap(w0, dw)
        for a in range(kd):
            i_d = d0 + a * dd
            if i_d < 0 or i_d >= D:
                continue
            for i in range(kh):
                ih = h0 + i * dh
                if ih < 0 or ih >= H:
                    continue
                for j in range(kw):
                    iw = w0 + j * dw
                    if iw < 0 or iw >= W:
                        continue
                    m, best = running_max(m, best, x[v, i_d, ih, iw], (i_d * H + ih) * W + iw)
        return m, best

    @jit
    def axis_count(o, size, k, stride, pad, include_pad):
        """One axis of torch's average-pooling divisor."""
        a = o * stride - pad
        b = min(a + k, size + pad)
        if include_pad:
            return b - a
        return min(b, size) - max(a, 0)

    @jit
    def avg_divisor(od, oh, ow, D, H, W, kd, kh, kw, sd, sh, sw, pd, ph, pw, include_pad, divisor):
        if divisor != 0:
            return divisor
        return (axis_count(od, D, kd, sd, pd, include_pad) * axis_count(oh, H, kh, sh, ph, include_pad)
                * axis_count(ow, W, kw, sw, pw, include_pad))

    @jit
    def avg_window(x, v, od, oh, ow, kd, kh, kw, sd, sh, sw, pd, ph, pw, include_pad, divisor):
        D, H, W = x.shape[1], x.shape[2], x.shape[3]
        acc = 0.0  # float64 accumulator; x[..]*0 would be NaN when that element is inf
        for i_d in range(max(od * sd - pd, 0), min(od * sd - pd + kd, D)):
            for ih in range(max(oh * sh - ph, 0), min(oh * sh - ph + kh, H)):
                for iw in range(max(ow * sw - pw, 0), min(ow * sw - pw + kw, W)):
                    acc += x[v, i_d, ih, iw]
        return acc / avg_divisor(od, oh, ow, D, H, W, kd, kh, kw, sd, sh, sw, pd, ph, pw, include_pad, divisor)

    @jit
    def windows_holding(i, k, stride, pad, n_out):
        """[lo, hi): the outputs o whose windows [o*stride - pad, o*stride - pad + k) hold input i along one
        axis, o in [ceil((i + pad - k + 1) / stride), floor((i + pad) / stride)] within [0, n_out)."""
        return max(-((k - 1 - i - pad) // stride), 0), min((i + pad) // stride, n_out - 1) + 1

    @jit
    def avg_input_grad(dy, v, i_d, ih, iw, D, H, W, kd, kh, kw, sd, sh, sw, pd, ph, pw, include_pad, divisor):
        """Gradient of one input element: each output whose window holds it contributes dy / its divisor."""
        od0, od1 = windows_holding(i_d, kd, sd, pd, dy.shape[1])
        oh0, oh1 = windows_holding(ih, kh, sh, ph, dy.shape[2])
        ow0, ow1 = windows_holding(iw, kw, sw, pw, dy.shape[3])
        acc = 0.0
        for od in range(od0, od1):
            for oh in range(oh0, oh1):
                for ow in range(ow0, ow1):
                    acc += dy[v, od, oh, ow] / avg_divisor(od, oh, ow, D, H, W, kd, kh, kw, sd, sh, sw, pd, ph, pw,
                                                           include_pad, divisor)
        return acc

    @jit
    def adaptive_start(o, size, out):
        return (o * size) // out

    @jit
    def adaptive_end(o, size, out):
        return ((o + 1) * size + out - 1) // out

    @jit
    def adaptive_avg_window(x, v, od, oh, ow, O, P, Q):
        D, H, W = x.shape[1], x.shape[2], x.shape[3]
        d0, d1 = adaptive_start(od, D, O), adaptive_end(od, D, O)
        h0, h1 = adaptive_start(oh, H, P), adaptive_end(oh, H, P)
        w0, w1 = adaptive_start(ow, W, Q), adaptive_end(ow, W, Q)
        acc = 0.0  # float64 accumulator; x[..]*0 would be NaN when that element is inf
        for i_d in range(d0, d1):
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    acc += x[v, i_d, ih, iw]
        return acc / ((d1 - d0) * (h1 - h0) * (w1 - w0))

    @jit
    def adaptive_max_window(x, v, od, oh, ow, O, P, Q):
        D, H, W = x.shape[1], x.shape[2], x.shape[3]
        d0, d1 = adaptive_start(od, D, O), adaptive_end(od, D, O)
        h0, h1 = adaptive_start(oh, H, P), adaptive_end(oh, H, P)
        w0, w1 = adaptive_start(ow, W, Q), adaptive_end(ow, W, Q)
        m = -math.inf
        best = (d0 * H + h0) * W + w0
        for i_d in range(d0, d1):
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    m, best = running_max(m, best, x[v, i_d, ih, iw], (i_d * H + ih) * W + iw)
        return m, best

    @jit
    def adaptive_windows_holding(i, size, out):
        """[lo, hi): a superset of the adaptive windows holding input i along one axis (each still to be
        checked: windows overlap)."""
        return adaptive_start(i, out, size), min(adaptive_end(i, out, size), out)

    @jit
    def adaptive_avg_input_grad(dy, v, i_d, ih, iw, D, H, W):
        """Gradient of one input element of adaptive average pooling: the windows that hold it."""
        O, P, Q = dy.shape[1], dy.shape[2], dy.shape[3]
        od0, od1 = adaptive_windows_holding(i_d, D, O)
        oh0, oh1 = adaptive_windows_holding(ih, H, P)
        ow0, ow1 = adaptive_windows_holding(iw, W, Q)
        acc = 0.0
        for od in range(od0, od1):
            d0, d1 = adaptive_start(od, D, O), adaptive_end(od, D, O)
            if i_d < d0 or i_d >= d1:
                continue
            for oh in range(oh0, oh1):
                h0, h1 = adaptive_start(oh, H, P), adaptive_end(oh, H, P)
                if ih < h0 or ih >= h1:
                    continue
                for ow in range(ow0, ow1):
                    w0, w1 = adaptive_start(ow, W, Q), adaptive_end(ow, W, Q)
                    if iw < w0 or iw >= w1:
                        continue
                    acc += dy[v, od, oh, ow] / ((d1 - d0) * (h1 - h0) * (w1 - w0))
        return acc

    return SimpleNamespace(
        max_window=max_window,
        avg_window=avg_window,
        avg_input_grad=avg_input_grad,
        adaptive_avg_window=adaptive_avg_window,
        adaptive_max_window=adaptive_max_window,
        adaptive_avg_input_grad=adaptive_avg_input_grad,
    )
