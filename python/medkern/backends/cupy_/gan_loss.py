"""GAN loss family on CuPy raw kernels (see backends/CONTRACT.md, "GAN loss family").

A direct formulation, independent of medkern's own CUDA code: one thread per chunk of CHUNK elements of
one sample evaluates the terms with the device's exp/log1p, writes the gradient and the chunk's sums;
one thread per sample adds its chunks in order and one thread adds the samples, so every sum has a fixed
order. Absent arrays are replaced by a one-element dummy and a flag.
"""
from __future__ import annotations

import numpy as np
import torch

from ._launch import THREADS, Kernels, as_cupy, blocks, on_torch_stream

CHUNK = 256

SOURCE = r"""
#define MEDKERN_CHUNK 256LL
#define MEDKERN_FOR_EACH(i, total)                                                          \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (total);     \
         i += (long long)gridDim.x * blockDim.x)

// kind and p as in medkern/_gan_terms.py: 1 BCE with logits, 2 square, 3 hinge, 4 linear.
__device__ __forceinline__ void medkern_gan_term(int kind, scalar_t p, scalar_t x, scalar_t* loss, scalar_t* grad) {
  if (kind == 1) {
    const scalar_t e = exp(-fabs(x)), r = (scalar_t)1 / ((scalar_t)1 + e);
    *loss = (x > 0 ? x : x * (scalar_t)0) - p * x + log1p(e);
    *grad = (x >= 0 ? r : e * r) - p;
  } else if (kind == 2) {
    *loss = (scalar_t)0.5 * (x - p) * (x - p);
    *grad = x - p;
  } else if (kind == 3) {
    const scalar_t m = (scalar_t)1 + p * x;
    *loss = m <= 0 ? (scalar_t)0 : m;
    *grad = m <= 0 ? (scalar_t)0 : p;
  } else {
    *loss = p * x;
    *grad = p;
  }
}

__device__ __forceinline__ void medkern_gan_side(const scalar_t* x, scalar_t* d, int write, long long b0, long long b1,
                                                 int kind, scalar_t p, scalar_t shift, scalar_t dscale,
                                                 scalar_t* ls, scalar_t* gs) {
  scalar_t l_sum = 0, g_sum = 0;
  for (long long i = b0; i < b1; ++i) {
    scalar_t l, g;
    medkern_gan_term(kind, p, x[i] - shift, &l, &g);
    g *= dscale;
    if (write) d[i] = g;
    l_sum += l;
    g_sum += g;
  }
  *ls = l_sum;
  *gs = g_sum;
}

extern "C" __global__ void medkern_gan_raw_sums(const scalar_t* real, const scalar_t* fake, long long N, long long M,
                                                long long per, scalar_t* ws) {
  MEDKERN_FOR_EACH(c, N * per) {
    const long long n = c / per, b0 = (c % per) * MEDKERN_CHUNK, b1 = min(M, b0 + MEDKERN_CHUNK);
    scalar_t sr = 0, sf = 0;
    for (long long i = b0; i < b1; ++i) {
      sr += real[n * M + i];
      sf += fake[n * M + i];
    }
    ws[c * 4 + 0] = sr;
    ws[c * 4 + 1] = sf;
  }
}

extern "C" __global__ void medkern_gan_means(const scalar_t* ws, long long chunks, scalar_t count, scalar_t* means) {
  if (blockIdx.x * blockDim.x + threadIdx.x != 0) return;
  scalar_t sr = 0, sf = 0;
  for (long long c = 0; c < chunks; ++c) {
    sr += ws[c * 4 + 0];
    sf += ws[c * 4 + 1];
  }
  means[0] = sr / count;
  means[1] = sf / count;
}

extern "C" __global__ void medkern_gan_loss_chunks(
    const scalar_t* real, const scalar_t* fake, const scalar_t* weight, int has_weight, scalar_t* d_real,
    scalar_t* d_fake, int write_real, int write_fake, int rt, double rp, int ft, double fp, const scalar_t* means,
    int relativistic, double scale, long long N, long long M, long long per, scalar_t* ws) {
  // real is taken relative to fake's batch mean and the other way round
  const scalar_t shift_real = relativistic ? means[1] : (scalar_t)0, shift_fake = relativistic ? means[0] : (scalar_t)0;
  MEDKERN_FOR_EACH(c, N * per) {
    const long long n = c / per, b0 = (c % per) * MEDKERN_CHUNK, b1 = min(M, b0 + MEDKERN_CHUNK);
    const scalar_t dscale = (scalar_t)scale * (has_weight ? weight[n] : (scalar_t)1) / (scalar_t)M;
    scalar_t* w = ws + c * 4;
    w[0] = w[1] = w[2] = w[3] = 0;
    if (rt) medkern_gan_side(real + n * M, d_real + n * M, write_real, b0, b1, rt, (scalar_t)rp, shift_real, dscale,
                             &w[0], &w[2]);
    if (ft) medkern_gan_side(fake + n * M, d_fake + n * M, write_fake, b0, b1, ft, (scalar_t)fp, shift_fake, dscale,
                             &w[1], &w[3]);
  }
}

extern "C" __global__ void medkern_gan_loss_samples(const scalar_t* ws, const scalar_t* weight, int has_weight,
                                                    long long N, long long M, long long per, double scale,
                                                    scalar_t* per_sample, scalar_t* dsum_real, scalar_t* dsum_fake,
                                                    int write_dsum) {
  MEDKERN_FOR_EACH(n, N) {
    scalar_t loss = 0, dr = 0, df = 0;
    for (long long b = 0; b < per; ++b) {
      const scalar_t* w = ws + (n * per + b) * 4;
      loss += w[0] + w[1];
      dr += w[2];
      df += w[3];
    }
    per_sample[n] = (scalar_t)scale * (has_weight ? weight[n] : (scalar_t)1) * (loss / (scalar_t)M);
    if (write_dsum) {
      dsum_real[n] = dr;
      dsum_fake[n] = df;
    }
  }
}

extern "C" __global__ void medkern_gan_total(const scalar_t* per_sample, long long N, scalar_t* total) {
  if (blockIdx.x * blockDim.x + threadIdx.x != 0) return;
  scalar_t s = 0;
  for (long long n = 0; n < N; ++n) s += per_sample[n];
  *total = s;
}

extern "C" __global__ void medkern_gan_square_chunks(const scalar_t* g, long long N, long long M, long long per,
                                                     scalar_t* ws) {
  MEDKERN_FOR_EACH(c, N * per) {
    const long long n = c / per, b0 = (c % per) * MEDKERN_CHUNK, b1 = min(M, b0 + MEDKERN_CHUNK);
    scalar_t s = 0;
    for (long long i = b0; i < b1; ++i) s += g[n * M + i] * g[n * M + i];
    ws[c] = s;
  }
}

extern "C" __global__ void medkern_gan_penalty_samples(const scalar_t* ws, long long N, long long per, double center,
                                                       double scale, scalar_t* per_sample, scalar_t* coef) {
  MEDKERN_FOR_EACH(n, N) {
    scalar_t sq = 0;
    for (long long b = 0; b < per; ++b) sq += ws[n * per + b];
    if (center < 0) {
      per_sample[n] = (scalar_t)scale * sq;
      coef[n] = (scalar_t)(2 * scale);
    } else {
      const scalar_t norm = sqrt(sq), d = norm - (scalar_t)center;
      per_sample[n] = (scalar_t)scale * d * d;
      coef[n] = norm == 0 ? (scalar_t)0 : (scalar_t)(2 * scale) * d / norm;
    }
  }
}
"""

_KERNELS = Kernels(SOURCE)
source_for = _KERNELS.source_for


def _run(name, ref, threads_total, args):
    with on_torch_stream(ref):
        cupy_args = tuple(as_cupy(a) if isinstance(a, torch.Tensor) else a for a in args)
        _KERNELS.get(name, ref.dtype)((blocks(threads_total),), (THREADS,), cupy_args)


def gan_loss_forward(real, fake, weight, per_sample, total, d_real, d_fake, dsum_real, dsum_fake, spec):
    ref = real if real is not None else fake
    N = ref.shape[0]
    M = ref.numel() // N
    per = (M + CHUNK - 1) // CHUNK
    ws = torch.empty(N * per * 4, dtype=ref.dtype, device=ref.device)
    means = torch.zeros(2, dtype=ref.dtype, device=ref.device)
    dummy = torch.zeros(1, dtype=ref.dtype, device=ref.device)
    pick = lambda t: dummy if t is None else t  # noqa: E731
    i64 = np.int64
    if spec.relativistic:
        _run("medkern_gan_raw_sums", ref, N * per, (real, fake, i64(N), i64(M), i64(per), ws))
        _run("medkern_gan_means", ref, 1, (ws, i64(N * per), (np.float32 if ref.dtype == torch.float32 else np.float64)(N * M), means))
    _run("medkern_gan_loss_chunks", ref, N * per,
         (pick(real), pick(fake), pick(weight), np.int32(weight is not None), pick(d_real), pick(d_fake),
          np.int32(d_real is not None), np.int32(d_fake is not None), np.int32(spec.real_term),
          np.float64(spec.real_param), np.int32(spec.fake_term), np.float64(spec.fake_param), means,
          np.int32(spec.relativistic), np.float64(spec.scale), i64(N), i64(M), i64(per), ws))
    _run("medkern_gan_loss_samples", ref, N,
         (ws, pick(weight), np.int32(weight is not None), i64(N), i64(M), i64(per), np.float64(spec.scale),
          per_sample, pick(dsum_real), pick(dsum_fake), np.int32(dsum_real is not None)))
    _run("medkern_gan_total", ref, 1, (per_sample, i64(N), total))


def gan_penalty_forward(grad, per_sample, total, coef, center, scale):
    N = grad.shape[0]
    M = grad.numel() // N
    per = (M + CHUNK - 1) // CHUNK
    ws = torch.empty(N * per, dtype=grad.dtype, device=grad.device)
    i64 = np.int64
    _run("medkern_gan_square_chunks", grad, N * per, (grad, i64(N), i64(M), i64(per), ws))
    _run("medkern_gan_penalty_samples", grad, N, (ws, i64(N), i64(per), np.float64(center), np.float64(scale),
                                                  per_sample, coef))
    _run("medkern_gan_total", grad, 1, (per_sample, i64(N), total))
