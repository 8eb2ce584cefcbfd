"""GAN loss family as ``@njit(parallel=True)`` kernels (see backends/CONTRACT.md, "GAN loss family"):
chunks of one sample run in parallel, their sums meet in a fixed order."""
from __future__ import annotations

import numba
import numpy as np

from .._numba import gan_math

CHUNK = 2048
_m = gan_math.compile_for(numba.njit(inline="always"))
_penalty_of, _side = _m.penalty_of, _m.side
_DUMMY = np.zeros((1, 1))


@numba.njit(parallel=True, cache=True)
def _loss_chunks(real, fake, weight, d_real, d_fake, write_real, write_fake, rt, rp, ft, fp, shift_real, shift_fake,
                 scale, ws):
    N, per = ws.shape[0], ws.shape[1]
    M = real.shape[1] if rt != 0 else fake.shape[1]
    for c in numba.prange(N * per):
        n, b = c // per, c % per
        b0, b1 = b * CHUNK, min(M, (b + 1) * CHUNK)
        dscale = scale * weight[n] / M
        ws[n, b, 0] = ws[n, b, 1] = ws[n, b, 2] = ws[n, b, 3] = 0.0
        if rt != 0:
            ws[n, b, 0], ws[n, b, 2] = _side(real, d_real, write_real, n, b0, b1, rt, rp, shift_real, dscale)
        if ft != 0:
            ws[n, b, 1], ws[n, b, 3] = _side(fake, d_fake, write_fake, n, b0, b1, ft, fp, shift_fake, dscale)


@numba.njit(parallel=True, cache=True)
def _square_chunks(g, ws):
    N, per = ws.shape
    M = g.shape[1]
    for c in numba.prange(N * per):
        n, b = c // per, c % per
        s = 0.0
        for i in range(b * CHUNK, min(M, (b + 1) * CHUNK)):
            s += g[n, i] * g[n, i]
        ws[n, b] = s


@numba.njit(cache=True)
def _ordered_sum(a):
    s = 0.0
    for v in a:
        s += v
    return s


@numba.njit(cache=True)
def _penalty_samples(ws, center, scale, per_sample, coef):
    total = 0.0
    for n in range(ws.shape[0]):
        per_sample[n], coef[n] = _penalty_of(_ordered_sum(ws[n]), center, scale)
        total += per_sample[n]
    return total


def _flat(t):
    return _DUMMY if t is None else t.detach().numpy().reshape(t.shape[0], -1)


def gan_loss_forward(real, fake, weight, per_sample, total, d_real, d_fake, dsum_real, dsum_fake, spec):
    ref = real if real is not None else fake
    N = ref.shape[0]
    M = ref.numel() // N
    ws = np.empty((N, (M + CHUNK - 1) // CHUNK, 4), dtype=ref.detach().numpy().dtype)
    shift_real = shift_fake = 0.0
    if spec.relativistic:  # real is taken relative to fake's batch mean and the other way round
        shift_real, shift_fake = _ordered_sum(_flat(fake).ravel()) / (N * M), _ordered_sum(_flat(real).ravel()) / (N * M)
    w = np.ones(N) if weight is None else weight.detach().numpy()
    _loss_chunks(_flat(real), _flat(fake), w, _flat(d_real), _flat(d_fake), d_real is not None, d_fake is not None,
                 spec.real_term, spec.real_param, spec.fake_term, spec.fake_param, shift_real, shift_fake, spec.scale,
                 ws)
    ps = per_sample.numpy()
    t = 0.0
    for n in range(N):
        ps[n] = spec.scale * w[n] * ((_ordered_sum(ws[n, :, 0]) + _ordered_sum(ws[n, :, 1])) / M)
        t += ps[n]
    total.fill_(t)
    for dsum, slot in ((dsum_real, 2), (dsum_fake, 3)):
        if dsum is not None:
            dsum.numpy()[:] = [_ordered_sum(ws[n, :, slot]) for n in range(N)]


def gan_penalty_forward(grad, per_sample, total, coef, center, scale):
    g = _flat(grad)
    ws = np.empty((g.shape[0], (g.shape[1] + CHUNK - 1) // CHUNK), dtype=g.dtype)
    _square_chunks(g, ws)
    total.fill_(_penalty_samples(ws, center, scale, per_sample.numpy(), coef.numpy()))
