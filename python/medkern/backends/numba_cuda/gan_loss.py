"""GAN loss family as ``numba.cuda`` kernels (see backends/CONTRACT.md, "GAN loss family").

One thread per chunk of CHUNK elements of one sample evaluates the terms, writes the gradient and its
sums; then one thread per sample adds its chunks in order, and one thread adds the samples: every sum has
a fixed order, so results are reproducible. The array-level ``launch_*`` functions also accept numpy
arrays, so the kernels run under ``NUMBA_ENABLE_CUDASIM=1`` on the CPU in tests."""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .._numba import gan_math

CHUNK = 256
_THREADS = 128
_m = gan_math.compile_for(cuda.jit(device=True, inline=True))
_penalty_of, _side = _m.penalty_of, _m.side


@cuda.jit
def _raw_chunk_sums(real, fake, ws):
    N, per = ws.shape[0], ws.shape[1]
    M = real.shape[1]
    for c in range(cuda.grid(1), N * per, cuda.gridsize(1)):
        n, b = c // per, c % per
        sr = 0.0
        sf = 0.0
        for i in range(b * CHUNK, min(M, (b + 1) * CHUNK)):
            sr += real[n, i]
            sf += fake[n, i]
        ws[n, b, 0] = sr
        ws[n, b, 1] = sf


@cuda.jit
def _means(ws, count, means):
    if cuda.grid(1) == 0:
        sr = 0.0
        sf = 0.0
        for n in range(ws.shape[0]):
            for b in range(ws.shape[1]):
                sr += ws[n, b, 0]
                sf += ws[n, b, 1]
        means[0] = sr / count
        means[1] = sf / count


@cuda.jit
def _loss_chunks(real, fake, weight, has_weight, d_real, d_fake, write_real, write_fake, rt, rp, ft, fp, means,
                 relativistic, scale, ws):
    N, per = ws.shape[0], ws.shape[1]
    M = real.shape[1] if rt != 0 else fake.shape[1]
    shift_real = means[1] if relativistic else 0.0  # real relative to fake's mean, and the other way round
    shift_fake = means[0] if relativistic else 0.0
    for c in range(cuda.grid(1), N * per, cuda.gridsize(1)):
        n, b = c // per, c % per
        b0, b1 = b * CHUNK, min(M, (b + 1) * CHUNK)
        dscale = scale * (weight[n] if has_weight else 1.0) / M
        ws[n, b, 0] = ws[n, b, 1] = ws[n, b, 2] = ws[n, b, 3] = 0.0
        if rt != 0:
            ws[n, b, 0], ws[n, b, 2] = _side(real, d_real, write_real, n, b0, b1, rt, rp, shift_real, dscale)
        if ft != 0:
            ws[n, b, 1], ws[n, b, 3] = _side(fake, d_fake, write_fake, n, b0, b1, ft, fp, shift_fake, dscale)


@cuda.jit
def _loss_samples(ws, weight, has_weight, M, scale, per_sample, dsum_real, dsum_fake, write_dsum):
    for n in range(cuda.grid(1), ws.shape[0], cuda.gridsize(1)):
        loss = 0.0
        dr = 0.0
        df = 0.0
        for b in range(ws.shape[1]):
            loss += ws[n, b, 0] + ws[n, b, 1]
            dr += ws[n, b, 2]
            df += ws[n, b, 3]
        per_sample[n] = scale * (weight[n] if has_weight else 1.0) * (loss / M)
        if write_dsum:
            dsum_real[n] = dr
            dsum_fake[n] = df


@cuda.jit
def _ordered_total(per_sample, total):
    if cuda.grid(1) == 0:
        s = 0.0
        for n in range(per_sample.shape[0]):
            s += per_sample[n]
        total[0] = s


@cuda.jit
def _square_chunks(g, ws):
    N, per = ws.shape
    M = g.shape[1]
    for c in range(cuda.grid(1), N * per, cuda.gridsize(1)):
        n, b = c // per, c % per
        s = 0.0
        for i in range(b * CHUNK, min(M, (b + 1) * CHUNK)):
            s += g[n, i] * g[n, i]
        ws[n, b] = s


@cuda.jit
def _penalty_samples(ws, center, scale, per_sample, coef):
    for n in range(cuda.grid(1), ws.shape[0], cuda.gridsize(1)):
        s = 0.0
        for b in range(ws.shape[1]):
            s += ws[n, b]
        per_sample[n], coef[n] = _penalty_of(s, center, scale)


def _grid(n: int) -> int:
    return max(1, min(math.ceil(n / _THREADS), 65535))


# --- array-level launchers: numba device arrays, or numpy arrays under the simulator ---------------------

def _scratch(shape, dtype, like, stream):
    if isinstance(like, np.ndarray):
        return np.empty(shape, dtype)
    return cuda.device_array(shape, dtype, stream=stream)


def launch_gan_loss_forward(real, fake, weight, per_sample, total, d_real, d_fake, dsum_real, dsum_fake, spec,
                            stream=0):
    """real / fake / d_* are (N, M) arrays or None; per_sample, dsum_* (N,); total (1,)."""
    ref = real if real is not None else fake
    N, M = ref.shape
    dtype = ref.dtype
    ws = _scratch((N, (M + CHUNK - 1) // CHUNK, 4), dtype, ref, stream)
    dummy = _scratch((1, 1), dtype, ref, stream)
    means = _scratch((2,), dtype, ref, stream)
    grid = _grid(ws.shape[0] * ws.shape[1])
    if spec.relativistic:
        _raw_chunk_sums[grid, _THREADS, stream](real, fake, ws)
        _means[1, 1, stream](ws, float(N * M), means)
    pick = lambda a: dummy if a is None else a  # noqa: E731
    w = dummy[0] if weight is None else weight
    _loss_chunks[grid, _THREADS, stream](pick(real), pick(fake), w, weight is not None, pick(d_real), pick(d_fake),
                                         d_real is not None, d_fake is not None, spec.real_term, spec.real_param,
                                         spec.fake_term, spec.fake_param, means, spec.relativistic, spec.scale, ws)
    write_dsum = dsum_real is not None
    _loss_samples[_grid(N), _THREADS, stream](ws, w, weight is not None, M, spec.scale, per_sample,
                                              dsum_real if write_dsum else dummy[0],
                                              dsum_fake if write_dsum else dummy[0], write_dsum)
    _ordered_total[1, 1, stream](per_sample, total)


def launch_gan_penalty_forward(g, per_sample, total, coef, center, scale, stream=0):
    N, M = g.shape
    ws = _scratch((N, (M + CHUNK - 1) // CHUNK), g.dtype, g, stream)
    _square_chunks[_grid(N * ws.shape[1]), _THREADS, stream](g, ws)
    _penalty_samples[_grid(N), _THREADS, stream](ws, center, scale, per_sample, coef)
    _ordered_total[1, 1, stream](per_sample, total)


# --- torch-facing functions ---------------------------------------------------------------------------

def _flat(t):
    if t is None:
        return None
    return cuda.as_cuda_array(t.detach()).reshape(t.shape[0], t.numel() // t.shape[0])


def _vec(t):
    return None if t is None else cuda.as_cuda_array(t.detach().reshape(-1))


def _stream(t):
    import torch

    return cuda.external_stream(torch.cuda.current_stream(t.device).cuda_stream)


def gan_loss_forward(real, fake, weight, per_sample, total, d_real, d_fake, dsum_real, dsum_fake, spec):
    ref = real if real is not None else fake
    launch_gan_loss_forward(_flat(real), _flat(fake), _vec(weight), _vec(per_sample), _vec(total), _flat(d_real),
                            _flat(d_fake), _vec(dsum_real), _vec(dsum_fake), spec, _stream(ref))


def gan_penalty_forward(grad, per_sample, total, coef, center, scale):
    launch_gan_penalty_forward(_flat(grad), _vec(per_sample), _vec(total), _vec(coef), center, scale, _stream(grad))
