"""Per-element GAN loss arithmetic (see medkern/_gan_terms.py), written once: ``compile_for(jit)`` builds
it with ``numba.njit`` for numba_cpu and ``cuda.jit(device=True)`` for numba_cuda. A direct formulation
with libm's exp/log1p, independent of csrc/common/gan_loss_params.h, so it cross-checks the native
kernels."""
import math
from types import SimpleNamespace


def compile_for(jit) -> SimpleNamespace:
    @jit
    def term(kind, p, x):
        """(loss, derivative) of one element; kind and p as in medkern._gan_terms."""
        if kind == 1:  # BCE with logits, stable for any x
            e = math.exp(-abs(x))
            r = 1.0 / (1.0 + e)
            pos = x if x > 0 else x * 0.0  # x * 0 keeps NaN
            return pos - p * x + math.log1p(e), (r if x >= 0 else e * r) - p
        if kind == 2:
            return 0.5 * (x - p) * (x - p), x - p
        if kind == 3:
            m = 1.0 + p * x
            if m <= 0:
                return 0.0 * m, 0.0 * m
            return m, p + 0.0 * m
        return p * x, p + 0.0 * x

    @jit
    def penalty_of(sq, center, scale):
        """(scale * p_n, coef_n) of one sample from its squared gradient norm."""
        if center < 0:
            return scale * sq, 2.0 * scale
        norm = math.sqrt(sq)
        d = norm - center
        if norm == 0:
            return scale * d * d, 0.0
        return scale * d * d, 2.0 * scale * d / norm

    @jit
    def side(x, d, write, n, b0, b1, kind, p, shift, dscale):
        """One side's terms over elements [b0, b1) of sample n: (loss sum, gradient sum), writing the
        gradients into d when asked."""
        ls = 0.0
        gs = 0.0
        for i in range(b0, b1):
            loss, g = term(kind, p, x[n, i] - shift)
            g *= dscale
            if write:
                d[n, i] = g
            ls += loss
            gs += g
        return ls, gs

    return SimpleNamespace(term=term, penalty_of=penalty_of, side=side)
