"""Per-element pooling arithmetic (see backends/CONTRACT.md), written once: ``compile_for(jit)`` builds
it for one target, with ``numba.njit`` for numba_cpu and ``cuda.jit(device=True)`` for numba_cuda (each
function calls the others through the closure, so they are compiled together). x and dy are
(planes, H, W) / (planes, P, Q) arrays."""
import math
from types import SimpleNamespace


def compile_for(jit) -> SimpleNamespace:
    @jit
    def running_max(m, best, v, k):
        """torch's max rule, one step of a row-major scan: v (at flat index k) replaces the running maximum
        m (at best) when it is larger or NaN, so the first of tied maxima wins and NaN propagates."""
        if v > m or v != v:
            return v, k
        return m, best


    @jit
    def max_window(x, p, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw):
        """torch's max pooling of one window: (value, flat index), by :func:`running_max`; an all -inf window
        reports its first in-range position."""
        H, W = x.shape[1], x.shape[2]
        h = oh * sh - ph
        while h < 0:
            h += dh
        c = ow * sw - pw
        while c < 0:
            c += dw
        m = -math.inf
        best = h * W + c
        for i in range(kh):
            ih = oh * sh - ph + i * dh
            if ih < 0 or ih >= H:
                continue
            for j in range(kw):
                iw = ow * sw - pw + j * dw
                if iw < 0 or iw >= W:
                    continue
                m, best = running_max(m, best, x[p, ih, iw], ih * W + iw)
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
    def avg_divisor(oh, ow, H, W, kh, kw, sh, sw, ph, pw, include_pad, divisor):
        if divisor != 0:
            return divisor
        return axis_count(oh, H, kh, sh, ph, include_pad) * axis_count(ow, W, kw, sw, pw, include_pad)


    @jit
    def avg_window(x, p, oh, ow, kh, kw, sh, sw, ph, pw, include_pad, divisor):
        H, W = x.shape[1], x.shape[2]
        acc = 0.0  # float64 accumulator; x[..]*0 would be NaN when that element is inf
        for ih in range(max(oh * sh - ph, 0), min(oh * sh - ph + kh, H)):
            for iw in range(max(ow * sw - pw, 0), min(ow * sw - pw + kw, W)):
                acc += x[p, ih, iw]
        return acc / avg_divisor(oh, ow, H, W, kh, kw, sh, sw, ph, pw, include_pad, divisor)


    @jit
    def avg_input_grad(dy, p, ih, iw, H, W, kh, kw, sh, sw, ph, pw, include_pad, divisor):
        """Gradient of one input element: the outputs whose windows contain it are
        o in [ceil((i + pad - k + 1) / s), floor((i + pad) / s)], each contributing dy / its divisor."""
        P, Q = dy.shape[1], dy.shape[2]
        acc = 0.0
        for oh in range(max(-((kh - 1 - ih - ph) // sh), 0), min((ih + ph) // sh, P - 1) + 1):
            for ow in range(max(-((kw - 1 - iw - pw) // sw), 0), min((iw + pw) // sw, Q - 1) + 1):
                acc += dy[p, oh, ow] / avg_divisor(oh, ow, H, W, kh, kw, sh, sw, ph, pw, include_pad, divisor)
        return acc


    @jit
    def adaptive_start(o, size, out):
        return (o * size) // out


    @jit
    def adaptive_end(o, size, out):
        return ((o + 1) * size + out - 1) // out


    @jit
    def adaptive_avg_window(x, p, oh, ow, P, Q):
        H, W = x.shape[1], x.shape[2]
        h0, h1 = adaptive_start(oh, H, P), adaptive_end(oh, H, P)
        w0, w1 = adaptive_start(ow, W, Q), adaptive_end(ow, W, Q)
        acc = 0.0  # float64 accumulator; x[..]*0 would be NaN when that element is inf
        for ih in range(h0, h1):
            for iw in range(w0, w1):
                acc += x[p, ih, iw]
        return acc / ((h1 - h0) * (w1 - w0))


    @jit
    def adaptive_max_window(x, p, oh, ow, P, Q):
        H, W = x.shape[1], x.shape[2]
        h0, h1 = adaptive_start(oh, H, P), adaptive_end(oh, H, P)
        w0, w1 = adaptive_start(ow, W, Q), adaptive_end(ow, W, Q)
        m = -math.inf
        best = h0 * W + w0
        for ih in range(h0, h1):
            for iw in range(w0, w1):
                m, best = running_max(m, best, x[p, ih, iw], ih * W + iw)
        return m, best


    @jit
    def adaptive_avg_input_grad(dy, p, ih, iw, H, W):
        """Gradient of one input element of adaptive average pooling: the windows that contain it."""
        P, Q = dy.shape[1], dy.shape[2]
        acc = 0.0
        for oh in range(adaptive_start(ih, P, H), min(adaptive_end(ih, P, H), P)):
            h0, h1 = adaptive_start(oh, H, P), adaptive_end(oh, H, P)
            if ih < h0 or ih >= h1:
                continue
            for ow in range(adaptive_start(iw, Q, W), min(adaptive_end(iw, Q, W), Q)):
                w0, w1 = adaptive_start(ow, W, Q), adaptive_end(ow, W, Q)
                if iw < w0 or iw >= w1:
                    continue
                acc += dy[p, oh, ow] / ((h1 - h0) * (w1 - w0))
        return acc

    return SimpleNamespace(
        running_max=running_max,
        max_window=max_window,
        axis_count=axis_count,
        avg_divisor=avg_divisor,
        avg_window=avg_window,
        avg_input_grad=avg_input_grad,
        adaptive_start=adaptive_start,
        adaptive_end=adaptive_end,
        adaptive_avg_window=adaptive_avg_window,
        adaptive_max_window=adaptive_max_window,
        adaptive_avg_input_grad=adaptive_avg_input_grad,
    )
