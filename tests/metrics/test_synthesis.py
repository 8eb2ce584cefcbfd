"""Image-synthesis metrics: Frechet and kernel distances, precision/recall, MS-SSIM, memorisation, and the
paired bootstrap of a metric difference."""
import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from medkern.metrics import (bootstrap_ci, diversity_ms_ssim, frechet_distance, kernel_distance, memorization,
                             ms_ssim, paired_bootstrap_delta, precision_recall)
from medkern.metrics import synthesis
from medkern.metrics.msssim import SCALE_WEIGHTS, scales_and_window


def gaussian(rng, n, mean, std):
    return mean + std * rng.standard_normal((n, np.size(mean)))


def correlated(rng, n, d):
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + rng.standard_normal(d)


# ---------------------------------------------------------------- Frechet distance

def test_fd_identical_symmetric_and_tensor_input():
    rng = np.random.default_rng(0)
    a, b = correlated(rng, 200, 6), correlated(rng, 150, 6)
    assert frechet_distance(a, a) <= 1e-9 * np.trace(np.cov(a, rowvar=False))
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-10)
    assert frechet_distance(torch.from_numpy(a).float(), b) == pytest.approx(
        frechet_distance(a.astype(np.float32), b), rel=1e-12)


def test_fd_matches_direct_sqrtm_formula():
    from scipy.linalg import sqrtm
    rng = np.random.default_rng(1)
    a, b = correlated(rng, 20, 5), 0.5 * correlated(rng, 30, 5)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    direct = (np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s1 + s2) - 2 * np.trace(sqrtm(s1 @ s2).real))
    assert frechet_distance(a, b) == pytest.approx(direct, rel=1e-9)
    u, v = a[:, :1], b[:, :1]  # one feature: (mean difference)^2 + (std difference)^2
    one = (u.mean() - v.mean()) ** 2 + (u.std(ddof=1) - v.std(ddof=1)) ** 2
    assert frechet_distance(u, v) == pytest.approx(one, rel=1e-9)


def test_fd_large_samples_match_closed_form():
    rng = np.random.default_rng(2)
    mu1, mu2 = np.array([0.0, 1.0, -1.0, 2.0]), np.array([0.5, 1.0, 0.0, 0.0])
    sd1, sd2 = np.array([1.0, 2.0, 0.5, 1.0]), np.array([1.0, 0.5, 0.5, 3.0])
    exact = np.sum((mu1 - mu2) ** 2) + np.sum(sd1 ** 2 + sd2 ** 2 - 2 * sd1 * sd2)
    fd = frechet_distance(gaussian(rng, 200_000, mu1, sd1), gaussian(rng, 200_000, mu2, sd2))
    assert fd == pytest.approx(exact, rel=0.01)


def test_fd_singular_covariance_fewer_samples_than_dims():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((5, 12))
    assert 0.0 <= frechet_distance(a, a) < 1e-9
    assert frechet_distance(a, a + 3.0) == pytest.approx(12 * 9.0, rel=1e-9)  # a shift only moves the mean


# ---------------------------------------------------------------- feature validation (shared by all three)

@pytest.mark.parametrize("fn", [frechet_distance, kernel_distance, precision_recall])
@pytest.mark.parametrize("real, fake, exc, word", [
    (np.zeros(10), np.zeros((10, 3)), ValueError, "real_features"),
    (np.ones((10, 3)), np.ones((10, 4)), ValueError, "feature dimension"),
    (np.ones((10, 3)), np.ones((1, 3)), ValueError, "fake_features"),
    (np.full((10, 3), np.nan), np.ones((10, 3)), ValueError, "finite"),
    (np.ones((10, 3), dtype=bool), np.ones((10, 3)), TypeError, "real_features"),
    (np.ones((10, 3)), np.array([["a"] * 3] * 10), TypeError, "fake_features"),
])
def test_feature_validation(fn, real, fake, exc, word):
    with pytest.raises(exc, match=word):
        fn(real, fake)


# ---------------------------------------------------------------- kernel distance

def mmd2_double_loop(x, y, degree=3, gamma=None, coef0=1.0):
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    k = lambda u, v: (gamma * float(np.dot(u, v)) + coef0) ** degree  # noqa: E731
    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


@pytest.mark.parametrize("kw", [{}, dict(degree=2, gamma=0.3, coef0=0.5)])
def test_kid_matches_double_loop(kw):
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((7, 3)), rng.standard_normal((7, 3)) + 0.3
    # a subset of all 7 samples is a permutation, to which the estimator is invariant: every subset agrees
    mean, std = kernel_distance(x, y, subsets=5, subset_size=50, **kw)
    assert mean == pytest.approx(mmd2_double_loop(x, y, **kw), rel=1e-12, abs=1e-14)
    assert std < 1e-12


def test_kid_unbiased_for_equal_distributions():
    rng = np.random.default_rng(5)
    values = np.array([kernel_distance(rng.standard_normal((30, 4)), rng.standard_normal((30, 4)), subsets=1,
                                       seed=t)[0] for t in range(400)])
    assert (values < 0).sum() > 50  # unbiased: it straddles 0, a biased (V-statistic) estimate never does
    assert abs(values.mean()) < 4 * values.std() / np.sqrt(values.size)


def test_kid_small_samples_average_to_large_sample_value():
    rng = np.random.default_rng(6)
    mean = np.array([0.6, 0.0, 0.0, 0.0])
    small = np.array([kernel_distance(rng.standard_normal((25, 4)), gaussian(rng, 25, mean, 1.2), subsets=1,
                                      seed=t)[0] for t in range(400)])
    large, spread = kernel_distance(rng.standard_normal((3000, 4)), gaussian(rng, 3000, mean, 1.2),
                                    subsets=4, subset_size=1500)
    assert large > 0.1
    assert abs(small.mean() - large) < 4 * small.std() / np.sqrt(small.size) + 4 * spread


def test_kid_subsets_seed_gamma_and_clipping():
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((60, 5)), rng.standard_normal((40, 5)) + 0.2
    assert kernel_distance(x, y, subsets=10, subset_size=20, seed=1) == \
        kernel_distance(x, y, subsets=10, subset_size=20, seed=1, gamma=0.2)  # default gamma = 1/D
    assert kernel_distance(x, y, subsets=10, subset_size=20, seed=1) != \
        kernel_distance(x, y, subsets=10, subset_size=20, seed=2)
    assert kernel_distance(x, y, subsets=10, subset_size=20, seed=1)[1] > 0
    # subset_size clipped to the smaller set: all 40 fake samples, 40 of the 60 real ones
    assert kernel_distance(x, y, subsets=1, subset_size=1000)[0] == pytest.approx(
        mmd2_double_loop(x[np.random.default_rng(0).choice(60, 40, replace=False)], y), rel=1e-10)


@pytest.mark.parametrize("kw", [dict(subsets=0), dict(subset_size=1), dict(degree=0), dict(degree=1.5),
                                dict(gamma=-1.0)])
def test_kid_bad_arguments(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        kernel_distance(np.ones((10, 3)), np.ones((10, 3)), **kw)


# ---------------------------------------------------------------- precision / recall

def test_pr_identical_and_far():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((100, 4))
    assert precision_recall(x, x) == (1.0, 1.0)
    assert precision_recall(x, x + 100.0) == (0.0, 0.0)


def test_pr_mode_collapse_onto_one_of_two_clusters():
    rng = np.random.default_rng(9)
    a, b = gaussian(rng, 100, np.zeros(4), 1.0), gaussian(rng, 100, np.full(4, 20.0), 1.0)
    real = np.concatenate([a, b])
    # the generator reproduces cluster a (up to tiny noise) and never visits b
    assert precision_recall(real, a + 1e-4 * rng.standard_normal(a.shape)) == (1.0, 0.5)
    # fresh samples of cluster a: almost all inside the real manifold, covering about half of it
    precision, recall = precision_recall(real, gaussian(rng, 200, np.zeros(4), 1.0), k=5)
    assert precision > 0.9 and 0.4 < recall <= 0.5


def test_pr_blocks_match_one_full_matrix(monkeypatch):
    rng = np.random.default_rng(10)
    real, fake = rng.standard_normal((50, 3)), rng.standard_normal((40, 3)) * 1.3 + 0.4
    d = lambda u, v: np.linalg.norm(u[:, None] - v[None], axis=2)  # noqa: E731
    r_real = np.sort(d(real, real), axis=1)[:, 3]
    r_fake = np.sort(d(fake, fake), axis=1)[:, 3]
    expected = ((d(fake, real) <= r_real[None]).any(1).mean(), (d(real, fake) <= r_fake[None]).any(1).mean())
    assert 0 < expected[0] < 1 and 0 < expected[1] < 1
    assert precision_recall(real, fake) == pytest.approx(expected, abs=1e-12)
    monkeypatch.setattr(synthesis, "_BLOCK_ELEMENTS", 400)  # blocks of 8 or 10 rows
    assert precision_recall(real, fake) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("k", [0, 1.5, 10, 11])
def test_pr_bad_k(k):
    with pytest.raises(ValueError, match="k"):
        precision_recall(np.random.rand(10, 2), np.random.rand(20, 2), k=k)


# ---------------------------------------------------------------- MS-SSIM

def ms_ssim_reference(x, y, weights, window, data_range=1.0):
    """Wang, Simoncelli & Bovik 2003 written out with numpy: a 2-D Gaussian window slid over the image
    (valid positions), 2 x 2 block means between scales, per channel then averaged over channels."""
    t = np.arange(window) - window // 2
    g = np.exp(-t ** 2 / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def local(a):
        return np.einsum("ncijkl,kl->ncij", sliding_window_view(a, (window, window), axis=(2, 3)), w)

    def halve(a):
        return a.reshape(*a.shape[:2], a.shape[2] // 2, 2, a.shape[3] // 2, 2).mean(axis=(3, 5))

    out = np.ones(x.shape[:2])
    for s, weight in enumerate(weights):
        if s:
            x, y = halve(x), halve(y)
        mx, my = local(x), local(y)
        vx, vy, cxy = local(x * x) - mx ** 2, local(y * y) - my ** 2, local(x * y) - mx * my
        cs = (2 * cxy + c2) / (vx + vy + c2)
        term = cs if s < len(weights) - 1 else cs * (2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1)
        out = out * np.maximum(term.mean(axis=(2, 3)), 0.0) ** weight
    return out.mean(axis=1)


def smooth_images(rng, n, c, size):
    """Random images with structure at several scales (a sum of sinusoids), in [0, 1]."""
    u = np.linspace(0, 1, size)
    img = np.zeros((n, c, size, size))
    for f in (1, 3, 8, 20):
        phase = rng.uniform(0, 2 * np.pi, (n, c, 1, 1, 2))
        img += np.sin(2 * np.pi * f * u[:, None] + phase[..., 0]) * np.cos(2 * np.pi * f * u[None] + phase[..., 1])
    return (img - img.min()) / (img.max() - img.min())


def test_ms_ssim_at_256_is_the_standard_definition():
    rng = np.random.default_rng(11)
    x = smooth_images(rng, 2, 2, 256)
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
    assert scales_and_window(256, 256) == (5, 11)
    expected = ms_ssim_reference(x, y, SCALE_WEIGHTS, 11)
    assert 0.3 < expected.min() and expected.max() < 0.99
    np.testing.assert_allclose(ms_ssim(x, y).numpy(), expected, rtol=1e-10)


def test_ms_ssim_small_images_fewer_scales_renormalised():
    rng = np.random.default_rng(12)
    x = smooth_images(rng, 3, 1, 28)
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
    assert scales_and_window(28, 28) == (3, 7)
    weights = np.array(SCALE_WEIGHTS[:3]) * sum(SCALE_WEIGHTS) / sum(SCALE_WEIGHTS[:3])
    np.testing.assert_allclose(ms_ssim(x, y, data_range=2.0).numpy(),
                               ms_ssim_reference(x, y, weights, 7, data_range=2.0), rtol=1e-10)


@pytest.mark.parametrize("hw, expected", [((64, 64), (4, 7)), ((7, 9), (1, 7)), ((30, 200), (3, 7)),
                                          ((176, 180), (5, 11)), ((160, 160), (5, 9))])
def test_scales_and_window(hw, expected):
    assert scales_and_window(*hw) == expected


def test_ms_ssim_identity_symmetry_and_noise():
    rng = np.random.default_rng(13)
    x = torch.from_numpy(smooth_images(rng, 4, 3, 32)).float()
    assert torch.allclose(ms_ssim(x, x), torch.ones(4, dtype=torch.float64), atol=1e-12)
    y = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ms_ssim(x, y), ms_ssim(y, x))
    values = torch.stack([ms_ssim(x, x + s * torch.randn(x.shape, generator=torch.Generator().manual_seed(1)))
                          for s in (0.01, 0.03, 0.1, 0.3, 1.0)])
    assert (values[1:] < values[:-1]).all() and values[-1].max() < 0.2


def test_diversity():
    rng = np.random.default_rng(14)
    one = smooth_images(rng, 1, 1, 28)
    assert diversity_ms_ssim(np.repeat(one, 5, axis=0), pairs=20) == pytest.approx(1.0, abs=1e-12)
    noise = rng.random((30, 1, 28, 28))
    assert diversity_ms_ssim(noise, pairs=200, batch=64) < 0.1
    varied = smooth_images(rng, 30, 1, 28)
    value = diversity_ms_ssim(varied, pairs=100, seed=3)
    assert diversity_ms_ssim(noise, pairs=100) < value < 1
    assert value == pytest.approx(diversity_ms_ssim(torch.from_numpy(varied), pairs=100, seed=3, batch=7), rel=1e-12)
    assert value != diversity_ms_ssim(varied, pairs=100, seed=4)


@pytest.mark.parametrize("x, y, kw, word", [
    (np.ones((2, 1, 28, 28)), np.ones((2, 1, 28, 27)), {}, "same shape"),
    (np.ones((1, 28, 28)), np.ones((1, 28, 28)), {}, "x must be 4-D"),
    (np.ones((2, 1, 6, 6)), np.ones((2, 1, 6, 6)), {}, "at least 7"),
    (np.full((2, 1, 8, 8), np.nan), np.ones((2, 1, 8, 8)), {}, "finite"),
    (np.ones((2, 1, 8, 8)), np.ones((2, 1, 8, 8)), dict(data_range=0), "data_range"),
])
def test_ms_ssim_bad_input(x, y, kw, word):
    with pytest.raises(ValueError, match=word):
        ms_ssim(x, y, **kw)


def test_diversity_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        diversity_ms_ssim(np.ones((1, 1, 8, 8)))
    with pytest.raises(ValueError, match="pairs"):
        diversity_ms_ssim(np.ones((3, 1, 8, 8)), pairs=0)


# ---------------------------------------------------------------- memorisation

def image_population(rng, n):
    """Images (n, 1, 8, 8) from one distribution: a few random patterns mixed with noise."""
    patterns = np.random.default_rng(99).random((5, 64))
    return (rng.dirichlet(np.ones(5), n) @ patterns + 0.1 * rng.standard_normal((n, 64))).reshape(n, 1, 8, 8)


def test_memorization_copies_fail_fresh_samples_pass():
    rng = np.random.default_rng(15)
    train, test, fresh = image_population(rng, 400), image_population(rng, 200), image_population(rng, 200)
    copies = train[rng.choice(400, 200)] + 1e-3 * rng.standard_normal((200, 1, 8, 8))
    copied = memorization(copies, train, test)
    assert not copied["passed"] and copied["ratio"] < 0.1 and copied["copied_fraction"] == 1.0
    ok = memorization(torch.from_numpy(fresh).float(), train, test)
    assert ok["passed"] and 0.9 < ok["ratio"] < 1.1 and ok["copied_fraction"] <= 0.05
    nearest = np.linalg.norm(fresh.reshape(200, 1, -1) - train.reshape(1, 400, -1), axis=2).min(axis=1)
    assert ok["gen_to_train_median"] == pytest.approx(np.median(nearest), rel=1e-5)  # float32 input
    blocked = memorization(fresh, train, test, batch=64)
    assert blocked == pytest.approx(memorization(fresh, train, test), rel=1e-12)
    # the thresholds are arguments: half copies fail the default 5% but pass a tolerance of 60%
    half = np.concatenate([copies[:100], fresh[:100]])
    assert not memorization(half, train, test)["passed"]
    assert memorization(half, train, test, min_ratio=0.0, max_copied=0.6)["passed"]


@pytest.mark.parametrize("gen, train, test, kw, word", [
    (np.ones((3, 1, 8, 8)), np.ones((3, 1, 8, 7)), np.ones((3, 1, 8, 7)), {}, "generated"),
    (np.ones((3, 1, 8, 8)), np.ones((3, 1, 8, 8)), np.ones((3, 64, 2)), {}, "test"),
    (np.ones((3, 1, 8, 8)), np.ones((0, 1, 8, 8)), np.ones((3, 1, 8, 8)), {}, "train"),
    (np.ones((3, 1, 8, 8)), np.ones((3, 1, 8, 8)), np.ones((3, 1, 8, 8)), dict(batch=0), "batch"),
])
def test_memorization_bad_input(gen, train, test, kw, word):
    with pytest.raises(ValueError, match=word):
        memorization(gen, train, test, **kw)


# ---------------------------------------------------------------- paired bootstrap of a difference

def test_paired_delta_identical_and_monotone_transform_give_zero():
    rng = np.random.default_rng(16)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.3 * y + 0.7 * rng.random(200), 0, 1)
    assert paired_bootstrap_delta(y, p, p, n_boot=100) == {"delta": 0.0, "lo": 0.0, "hi": 0.0, "n_valid": 100}
    # p ** 2 ranks the samples the same way: the same AUROC on every resample, so the paired interval is a
    # point while the unpaired intervals of the two models are wide
    d = paired_bootstrap_delta(y, p, p ** 2, n_boot=100)
    assert d["delta"] == 0.0 and d["lo"] == d["hi"] == 0.0
    lo, hi = bootstrap_ci(y, p, n_boot=100)
    assert hi - lo > 0.05


def test_paired_delta_hand_computed():
    # b gets sample 3 wrong where a is right: accuracy 1 -> 3/4, delta -1/4. A resample holding sample 3
    # c times has delta -c/4 with c ~ Binomial(4, 1/4): P(c >= 3) = 0.051 > 2.5% > P(c = 4) = 0.004, and
    # P(c = 0) = 0.32 > 2.5%, so the 95% interval is [-3/4, 0].
    y = [0, 1, 0, 1]
    d = paired_bootstrap_delta(y, [0.1, 0.9, 0.2, 0.8], [0.1, 0.9, 0.2, 0.3], metric="accuracy", n_boot=2000)
    assert d["delta"] == -0.25 and d["lo"] == -0.75 and d["hi"] == 0.0 and d["n_valid"] == 2000


def test_paired_delta_thresholds_callable_and_undefined():
    rng = np.random.default_rng(17)
    y = rng.integers(0, 2, 150)
    p = np.clip(0.3 * y + 0.7 * rng.random(150), 0, 1)
    d = paired_bootstrap_delta(y, p, p, "sensitivity", n_boot=200, threshold_a=0.9, threshold_b=0.2)
    assert d["delta"] > 0.5 and d["lo"] > 0.4
    d = paired_bootstrap_delta(y, p, 1 - p, lambda yt, pr: float(np.mean((pr >= 0.5) == yt)), n_boot=50)
    assert d["hi"] < 0 < d["n_valid"]
    d = paired_bootstrap_delta([0, 0, 0], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1], n_boot=20)  # AUROC needs both classes
    assert np.isnan(d["delta"]) and np.isnan(d["lo"]) and np.isnan(d["hi"]) and d["n_valid"] == 0


@pytest.mark.parametrize("kw, exc", [(dict(metric="auc"), ValueError), (dict(metric=3), TypeError),
                                     (dict(n_boot=0), ValueError), (dict(alpha=0.0), ValueError),
                                     (dict(prob_b=np.full((4, 3), 1 / 3)), ValueError)])
def test_paired_delta_bad_arguments(kw, exc):
    args = dict(y_true=[0, 1, 0, 1], prob_a=[0.2, 0.8, 0.3, 0.6], prob_b=[0.1, 0.9, 0.6, 0.7])
    args.update(kw)
    with pytest.raises(exc):
        paired_bootstrap_delta(**args)
