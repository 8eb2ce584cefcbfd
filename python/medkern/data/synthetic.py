"""Deterministic synthetic stand-ins for real data, the built-in default when no data is given.

Each generator draws every random quantity from one ``numpy.random.Generator(seed)``, so a seed fixes the
output bit for bit. The class differences follow the clinical signs, with effect sizes drawn from
overlapping ranges so that a good model does well but not perfectly.
"""
from __future__ import annotations

import numpy as np
import torch

from .datasets import ArrayDataset

ECG_FS = 125.0  # Hz, the rate of the widely used 187-sample MIT-BIH beat windows
VITALS_CHANNELS = ("heart_rate_bpm/100", "systolic_bp_mmhg/100", "spo2_percent/100")


def _labels(rng: np.random.Generator, n: int, fraction: float, name: str) -> np.ndarray:
    """Exactly round(n * fraction) positives, in random order."""
    if int(n) < 1:
        raise ValueError(f"n must be positive, got {n}")
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {fraction}")
    y = np.zeros(int(n), dtype=np.int64)
    y[: int(round(n * fraction))] = 1
    return rng.permutation(y)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # the logistic function without exp overflow far from 0


def _smooth_field(rng: np.random.Generator, n: int, grid: int, size: int) -> np.ndarray:
    """(n, size, size) smooth random fields, zero mean and unit std each: coarse noise, bicubically upsampled."""
    coarse = torch.from_numpy(rng.standard_normal((n, 1, grid, grid)))
    field = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[:, 0]
    field = field.numpy()
    field -= field.mean(axis=(1, 2), keepdims=True)
    return field / (field.std(axis=(1, 2), keepdims=True) + 1e-8)


def synthetic_lesions(n: int, size: int = 28, seed: int = 0, malignant_fraction: float = 0.3) -> ArrayDataset:
    """Dermoscopy-like RGB images ``(n, 3, size, size)`` in [0, 1]; label 1 = malignant.

    A brown lesion on skin under a dermoscope's vignette. Malignant lesions (the ABCD signs) tend to have
    irregular borders (higher-order harmonics of the outline), asymmetric shape and colour (an off-centre dark
    blotch), heterogeneous texture with blue-grey veil, and larger size; benign ones are rounder and even.
    The tendencies are drawn from overlapping distributions.
    """
    if int(size) < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    rng = np.random.default_rng(seed)
    y = _labels(rng, n, malignant_fraction, "malignant_fraction")
    n, m = len(y), y.astype(np.float64)[:, None, None]
    coords = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    yy, xx = np.meshgrid(coords, coords, indexing="ij")

    def draw(benign, malignant):
        """Per-image parameter from its class's distribution, shaped (n, 1, 1)."""
        return np.where(y == 1, malignant, benign)[:, None, None]

    irregular = draw(rng.beta(2.0, 5.0, n), rng.beta(4.0, 2.5, n))
    asymmetry = draw(rng.beta(2.0, 5.0, n), rng.beta(3.5, 3.0, n))
    hetero = draw(rng.beta(2.0, 5.0, n), rng.beta(4.0, 2.5, n))
    radius = rng.uniform(0.3, 0.55, n)[:, None, None] + 0.08 * m
    aspect = rng.uniform(0.7, 1.0, n)[:, None, None]
    angle = rng.uniform(0.0, np.pi, n)[:, None, None]
    cx, cy = (rng.normal(0.0, 0.08, (2, n)))[:, :, None, None]

    # Outline: an ellipse whose radius varies with angle by a sum of harmonics (k = 2..8).
    u, v = xx - cx, yy - cy
    ur = u * np.cos(angle) + v * np.sin(angle)
    vr = (-u * np.sin(angle) + v * np.cos(angle)) / aspect
    rho, theta = np.hypot(ur, vr), np.arctan2(vr, ur)
    ks = np.arange(2, 9)
    amp = 0.35 * rng.standard_normal((n, len(ks))) / ks ** 0.8
    phase = rng.uniform(0, 2 * np.pi, (n, len(ks)))
    wobble = np.einsum("nk,nkhw->nhw", amp, np.cos(ks[None, :, None, None] * theta[:, None] + phase[..., None, None]))
    outline = radius * (1.0 + irregular * wobble + 0.25 * asymmetry * np.cos(theta - phase[:, :1, None]))
    softness = draw(rng.uniform(0.04, 0.12, n), rng.uniform(0.02, 0.1, n))
    mask = _sigmoid((outline - rho) / (softness * radius))

    # Colour: skin tone, lesion brown, texture variation, an off-centre dark blotch and a blue-grey veil.
    tone = rng.uniform(0.8, 1.05, n)[:, None, None, None]
    skin = tone * (np.array([0.9, 0.7, 0.6]) + rng.normal(0, 0.03, (n, 3)))[:, :, None, None]
    brown = (np.array([0.5, 0.32, 0.2]) * rng.uniform(0.6, 1.1, (n, 1)))[:, :, None, None]
    texture = 1.0 + (0.1 + 0.5 * hetero)[:, None] * 0.5 * _smooth_field(rng, n, 5, size)[:, None]
    blotch_dir = rng.uniform(0, 2 * np.pi, n)
    bx = cx[:, 0, 0] + 0.5 * radius[:, 0, 0] * np.cos(blotch_dir)
    by = cy[:, 0, 0] + 0.5 * radius[:, 0, 0] * np.sin(blotch_dir)
    blotch = np.exp(-((xx - bx[:, None, None]) ** 2 + (yy - by[:, None, None]) ** 2) / (0.5 * radius ** 2))
    lesion = brown * texture * (1.0 - 0.6 * (asymmetry * blotch)[:, None])
    veil = np.clip(_smooth_field(rng, n, 4, size) - 0.5, 0.0, None) * hetero * draw(rng.uniform(0, 0.3, n),
                                                                                     rng.uniform(0.2, 0.8, n))
    lesion = lesion * (1 - veil[:, None]) + np.array([0.4, 0.45, 0.55])[None, :, None, None] * veil[:, None]
    img = skin * (1.0 - mask[:, None]) + lesion * mask[:, None]

    # Imaging: the dermoscope's dark corners, skin grain and sensor noise.
    vignette = 1.0 - rng.uniform(0.1, 0.4, n)[:, None, None] * np.clip(np.hypot(xx, yy) - 0.8, 0, None) ** 2 * 4
    img = img * vignette[:, None] * (1.0 + 0.04 * _smooth_field(rng, n, size // 3, size)[:, None])
    img = img + rng.normal(0.0, 0.02, img.shape)
    return ArrayDataset(np.clip(img, 0.0, 1.0).astype(np.float32), y)


def _unit_vectors(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Directions uniform on the sphere, shaped ``(*shape, 3)``."""
    v = rng.standard_normal((*shape, 3))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _smooth_volume(rng: np.random.Generator, n: int, grid: int, size: int) -> np.ndarray:
    """(n, size, size, size) smooth random fields of unit std: coarse noise, trilinearly upsampled."""
    coarse = torch.from_numpy(rng.standard_normal((n, 1, grid, grid, grid)))
    field = torch.nn.functional.interpolate(coarse, size=(size,) * 3, mode="trilinear", align_corners=False)
    field = field[:, 0].numpy()
    return (field - field.mean(axis=(1, 2, 3), keepdims=True)) / (field.std(axis=(1, 2, 3), keepdims=True) + 1e-8)


def _segment_distance(points: np.ndarray, start: np.ndarray, direction: np.ndarray, length: np.ndarray) -> tuple:
    """Distances ``(V, K)`` of points ``(V, 3)`` from K segments ``start + t direction``, 0 <= t <= length
    (``start`` and unit ``direction`` (K, 3), ``length`` (K,)), and the t of each nearest point."""
    along = points @ direction.T - (start * direction).sum(axis=1)
    t = np.clip(along, 0.0, length)
    # |p - s - t d|^2 = |p - s|^2 - 2 t (p - s).d + t^2 for unit d, without a (V, K, 3) array
    squared = ((points ** 2).sum(axis=1)[:, None] - 2 * points @ start.T + (start ** 2).sum(axis=1)
               - 2 * t * along + t ** 2)
    return np.sqrt(np.maximum(squared, 0.0)), t


def synthetic_nodules(n: int, size: int = 24, seed: int = 0, malignant_fraction: float = 0.3) -> ArrayDataset:
    """Chest-CT-like volumes ``(n, 1, size, size, size)`` in [0, 1], each around a lung nodule; label 1 =
    malignant.

    Dark parenchyma of smooth texture with a few bright vessels running through it and noise, and one
    nodule near the centre. Malignant nodules tend (the Lung-RADS and Brock model signs) to be larger,
    lobulated (the radius varies with direction) and spiculated (thin spikes radiating from the surface);
    benign ones are smaller, round and smooth-edged, and some are calcified (brighter). The tendencies are
    drawn from overlapping distributions, so size alone does not decide.
    """
    if int(size) < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    rng = np.random.default_rng(seed)
    y = _labels(rng, n, malignant_fraction, "malignant_fraction")
    n, malignant = len(y), y == 1
    coords = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    points = np.stack(np.meshgrid(coords, coords, coords, indexing="ij"), axis=-1)  # (size, size, size, 3)

    def draw(if_benign, if_malignant):
        return np.where(malignant, if_malignant, if_benign)

    radius = draw(rng.uniform(0.12, 0.3, n), rng.uniform(0.18, 0.4, n))
    lobulation = draw(rng.beta(2.0, 6.0, n), rng.beta(4.0, 3.0, n)) * 0.35
    lobe_dirs, lobe_freq = _unit_vectors(rng, (n, 3)), rng.integers(2, 5, (n, 3))
    lobe_phase = rng.uniform(0, 2 * np.pi, (n, 3))
    spikes = draw(rng.binomial(2, 0.25, n), rng.binomial(7, 0.5, n))  # spikes shown of the 7 drawn
    spike_dirs, spike_len = _unit_vectors(rng, (n, 7)), rng.uniform(0.6, 1.4, (n, 7))
    margin = draw(rng.uniform(0.02, 0.05, n), rng.uniform(0.04, 0.09, n))
    density = np.where(~malignant & (rng.random(n) < 0.3), rng.uniform(0.85, 0.95, n), rng.uniform(0.5, 0.7, n))
    centre = np.clip(rng.normal(0.0, 0.2, (n, 3)), -0.4, 0.4)
    vessels = rng.integers(1, 5, n)  # of 4 drawn
    vessel_start, vessel_dirs = rng.uniform(-1, 1, (n, 4, 3)), _unit_vectors(rng, (n, 4))
    vessel_radius, vessel_density = rng.uniform(0.04, 0.1, (n, 4)), rng.uniform(0.4, 0.65, (n, 4))
    background = rng.uniform(0.08, 0.18, n)[:, None, None, None]
    texture = 0.04 * _smooth_volume(rng, n, 4, size)
    noise = rng.uniform(0.02, 0.05, n)[:, None, None, None] * rng.standard_normal((n, size, size, size))

    vol = (background + texture + noise).reshape(n, -1)
    points = points.reshape(-1, 3)
    for i in range(n):
        rel = points - centre[i]
        rho = np.linalg.norm(rel, axis=-1)
        u = rel / np.maximum(rho, 1e-6)[:, None]
        wobble = np.cos(lobe_freq[i] * np.pi * (u @ lobe_dirs[i].T) + lobe_phase[i]).mean(axis=-1)
        inside = _sigmoid((radius[i] * (1.0 + lobulation[i] * wobble) - rho) / margin[i])
        if spikes[i]:
            length = radius[i] * (1 + spike_len[i, :spikes[i]])
            dist, t = _segment_distance(rel, np.zeros((spikes[i], 3)), spike_dirs[i, :spikes[i]], length)
            width = 0.04 * (1.0 - t / length)  # thin, narrowing outwards
            inside = np.maximum(inside, _sigmoid((width - dist) / 0.015).max(axis=1))
        k = vessels[i]
        dist, _ = _segment_distance(points, vessel_start[i, :k], vessel_dirs[i, :k], np.full(k, 4.0))
        tubes = vessel_density[i, :k] * _sigmoid((vessel_radius[i, :k] - dist) / 0.02)
        vol[i] = np.maximum(vol[i], tubes.max(axis=1))
        vol[i] = vol[i] * (1.0 - inside) + density[i] * inside
    vol = vol.reshape(n, size, size, size)
    return ArrayDataset(np.clip(vol, 0.0, 1.0)[:, None].astype(np.float32), y)


def _ecg_waves(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Per-sample P, Q, R, S, T Gaussian parameters (time from the R peak in s, amplitude in mV, width in s),
    with normal between-subject variation; each entry is an (n, 5) array in P, Q, R, S, T order."""
    t = np.array([-0.2, -0.03, 0.0, 0.03, 0.28]) + rng.normal(0, [0.015, 0.003, 0.0, 0.003, 0.02], (n, 5))
    a = np.array([0.14, -0.12, 1.2, -0.25, 0.3]) * rng.uniform([0.6, 0.5, 0.7, 0.5, 0.5], [1.4, 1.5, 1.3, 1.5, 1.5],
                                                              (n, 5))
    w = np.array([0.025, 0.01, 0.012, 0.012, 0.05]) * rng.uniform(0.85, 1.2, (n, 5))
    return {"t": t, "a": a, "w": w}


def synthetic_ecg(n: int, length: int = 187, seed: int = 0, abnormal_fraction: float = 0.3,
                  fs: float = ECG_FS) -> ArrayDataset:
    """Single-lead ECG windows ``(n, 1, length)`` in mV (about -2..3) at ``fs`` Hz, a beat's R peak near
    0.4 s; label 1 = abnormal.

    Beats follow the sum-of-Gaussians P-QRS-T model (McSharry et al. 2003) with heart-rate, amplitude and
    width variation, baseline wander and noise. An abnormal window has one of four morphologies at a random
    severity: a wide QRS (ventricular ectopic: premature, no P, wide complex, discordant T), an inverted T
    wave, ST-segment elevation, or missing P waves with fibrillatory baseline and irregular rhythm.
    """
    if int(length) < 16:
        raise ValueError(f"length must be at least 16, got {length}")
    rng = np.random.default_rng(seed)
    y = _labels(rng, n, abnormal_fraction, "abnormal_fraction")
    n = len(y)
    kind = np.where(y == 1, rng.integers(0, 4, n), -1)  # 0 wide QRS, 1 inverted T, 2 ST elevation, 3 missing P
    severity = rng.uniform(0.3, 1.0, n)
    waves = _ecg_waves(rng, n)

    # Beats at R times around the window's centre beat c, the one the window is labelled by.
    beats = np.arange(-3, 4)
    c = int(np.flatnonzero(beats == 0)[0])
    rr = 60.0 / rng.uniform(55, 100, n)
    jitter = rng.normal(0, 0.03, (n, len(beats)))
    af = kind == 3
    jitter[af] = rng.normal(0, 0.12 + 0.1 * severity[af, None], (af.sum(), len(beats)))  # irregularly irregular
    jitter[:, c] = 0.0
    r_times = (0.4 + rng.normal(0, 0.02, n))[:, None] + (beats[None] + jitter) * rr[:, None]
    per_beat = {key: np.repeat(v[:, None], len(beats), axis=1) for key, v in waves.items()}
    per_beat["t"] = per_beat["t"] * np.sqrt(rr)[:, None, None] ** np.array([0, 0, 0, 0, 1])  # QT follows rate

    pvc = np.flatnonzero(kind == 0)
    s = severity[pvc]
    per_beat["w"][pvc, c, 1:4] *= (1.0 + 2.0 * s)[:, None]
    per_beat["a"][pvc, c, 2] *= 1.0 + 0.4 * s
    per_beat["a"][pvc, c, 0] = 0.0
    per_beat["a"][pvc, c, 4] = -np.abs(per_beat["a"][pvc, c, 4]) * (1.0 + s)
    # The ectopic beat comes early after the previous one, and a compensatory pause follows it.
    r_times[pvc, c - 1] = r_times[pvc, c] - rr[pvc] * (1.0 - 0.35 * s)
    r_times[pvc, c + 1] = r_times[pvc, c] + rr[pvc] * (1.0 + 0.35 * s)
    per_beat["a"][kind == 1, :, 4] = -np.abs(per_beat["a"][kind == 1, :, 4]) * severity[kind == 1, None]
    per_beat["a"][af, :, 0] = 0.0

    tt = np.arange(int(length)) / float(fs)
    dt = tt[None, None, None, :] - (r_times[:, :, None, None] + per_beat["t"][..., None])
    ecg = np.einsum("nbw,nbwl->nl", per_beat["a"], np.exp(-0.5 * (dt / per_beat["w"][..., None]) ** 2))

    ste = kind == 2
    if ste.any():
        # ST elevation: a plateau from the J point into the T wave, on every beat.
        lo = r_times[ste][..., None] + 0.04
        hi = r_times[ste][..., None] + per_beat["t"][ste][:, :, 4, None]
        rise = _sigmoid((tt - lo) / 0.01) - _sigmoid((tt - hi) / 0.03)
        ecg[ste] += (0.08 + 0.25 * severity[ste])[:, None] * rise.sum(axis=1)
    if af.any():
        f_rate = rng.uniform(5, 8, af.sum())[:, None]
        ecg[af] += rng.uniform(0.02, 0.06, af.sum())[:, None] * np.sin(2 * np.pi * f_rate * tt
                                                                         + rng.uniform(0, 6.3, (af.sum(), 1)))

    gain = rng.uniform(0.7, 1.3, (n, 1))
    wander = rng.uniform(0, 0.15, (n, 1)) * np.sin(2 * np.pi * rng.uniform(0.15, 0.5, (n, 1)) * tt
                                                    + rng.uniform(0, 6.3, (n, 1)))
    noise = rng.uniform(0.01, 0.04, (n, 1)) * rng.standard_normal((n, len(tt)))
    ecg = gain * ecg + wander + noise
    return ArrayDataset(ecg[:, None].astype(np.float32), y)


def synthetic_vitals(n: int, context: int = 96, horizon: int = 8, seed: int = 0) -> ArrayDataset:
    """Minute-by-minute bedside vital signs for forecasting: x ``(n, 3, context)`` holds heart rate,
    systolic blood pressure and SpO2 (``VITALS_CHANNELS``: bpm/100, mmHg/100, %/100, so about 0.4..1.6),
    y ``(n, horizon)`` the heart rate's next ``horizon`` minutes (bpm/100).

    Heart rate = baseline + drift + a slow oscillation + AR(1) noise + the response, a few minutes late, to
    desaturation events visible earlier in SpO2; blood pressure follows heart rate. The lagged response and
    the smooth components make the horizon partly predictable from the context, and the noise keeps it from
    being exactly so.
    """
    if int(context) < 2 or int(horizon) < 1:
        raise ValueError(f"context must be >= 2 and horizon >= 1, got context={context}, horizon={horizon}")
    rng = np.random.default_rng(seed)
    if int(n) < 1:
        raise ValueError(f"n must be positive, got {n}")
    total = int(context) + int(horizon)
    t = np.arange(total, dtype=np.float64)[None]
    col = (int(n), 1)
    hr0 = rng.uniform(55, 100, col)
    drift = rng.normal(0, 0.05, col) * t
    wave = rng.uniform(0, 6, col) * np.sin(2 * np.pi * t / rng.uniform(30, 120, col) + rng.uniform(0, 6.3, col))
    ar = np.zeros((int(n), total))
    shocks = rng.normal(0, 0.4, (int(n), total))
    for i in range(1, total):
        ar[:, i] = 0.8 * ar[:, i - 1] + shocks[:, i]
    # Desaturation: a smooth SpO2 dip starting somewhere in the second half of the context or the horizon.
    has_event = rng.random(col) < 0.6
    start = rng.uniform(0.5 * context, total, col)
    width = rng.uniform(4, 10, col)
    depth = rng.uniform(3, 10, col) * has_event
    dip = depth * np.exp(-0.5 * ((t - start - width) / width) ** 2)
    lag = rng.uniform(3, 6, col)
    response = rng.uniform(1.0, 2.0, col) * depth * np.exp(-0.5 * ((t - start - width - lag) / width) ** 2)
    hr = hr0 + drift + wave + ar + response
    sbp = rng.uniform(105, 140, col) + 0.3 * (hr - hr0) + rng.normal(0, 1.5, (int(n), total))
    spo2 = np.minimum(rng.uniform(95, 99, col) - dip + rng.normal(0, 0.3, (int(n), total)), 100.0)
    series = np.stack([hr, sbp, spo2], axis=1) / 100.0
    return ArrayDataset(series[:, :, :context].astype(np.float32), series[:, 0, context:].astype(np.float32))
