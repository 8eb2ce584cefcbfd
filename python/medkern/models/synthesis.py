"""The synthesis task end to end: train an ``ImageGAN`` on real images, measure its samples (Frechet and
kernel distances in the embedding space of a classifier trained on the same real data, precision and
recall, MS-SSIM diversity, a memorisation check) against a blurred copy of the real data as a reference,
and measure what synthetic minority-class images add to a classifier (the utility experiment)."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import data as datasets, metrics
from ..data import ArrayDataset
from .gan import ImageGAN
from .image import ImageClassifier

MODEL_FILE = "model.pt"
EMBEDDER_FILE = "embedder.pt"
BLUR_SIGMA = 1.0  # pixels: the reference degradation whose FD the samples must beat


def blur(images: torch.Tensor, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """Gaussian blur of (N, C, H, W) images, separable, radius 3 sigma, reflected at the borders."""
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=images.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = images.shape[1]
    x = F.pad(images, [radius] * 4, mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), groups=c)


def _distances(f_real: np.ndarray, f_other: np.ndarray, seed: int) -> dict:
    """Frechet and kernel distances between two embedding sets."""
    # Subsets of half the smaller set: at the full set every subset would be the same sample and the
    # spread over subsets (kid_std) zero. KID's mean is unbiased at any subset size.
    size = max(2, min(1000, len(f_real) // 2, len(f_other) // 2))
    kid, kid_std = metrics.kernel_distance(f_real, f_other, subset_size=size, seed=seed)
    return {"fd": metrics.frechet_distance(f_real, f_other), "kid": kid, "kid_std": kid_std}


def quality(gan: ImageGAN, embedder: ImageClassifier, train: ArrayDataset, test: ArrayDataset | None, *,
            seed: int = 0) -> dict:
    """Sample quality against the real training images, with as many generated images as there are
    training images (in the training class proportions), so every distance is at the same sample size.
    ``blurred`` holds the same distances for the training images blurred by ``BLUR_SIGMA`` pixels, the
    reference the samples must beat; ``test`` for the real test images (a smaller sample, so biased up)."""
    real = train.x
    generated = gan.sample(len(real), seed=seed)
    f_real, f_generated = embedder.embed(real), embedder.embed(generated)
    out = _distances(f_real, f_generated, seed)
    out["precision"], out["recall"] = metrics.precision_recall(f_real, f_generated)
    out["diversity_ms_ssim"] = metrics.diversity_ms_ssim(generated, seed=seed)
    out["diversity_ms_ssim_real"] = metrics.diversity_ms_ssim(real, seed=seed)
    out["blurred"] = _distances(f_real, embedder.embed(blur(real)), seed)
    out["blur_sigma"] = BLUR_SIGMA
    out["n"] = len(real)
    if test is not None:
        out["test"] = _distances(f_real, embedder.embed(test.x), seed)
        mem = metrics.memorization(generated, real, test.x)
        out["memorization_ratio"] = mem["ratio"]
        out["memorization"] = mem
    if gan.num_classes:
        out["per_class_fd"] = {}
        for k in range(gan.num_classes):
            mine = (train.y == k).numpy()
            if mine.sum() > 1:
                fake = gan.sample(int(mine.sum()), label=k, seed=seed + 1 + k)
                out["per_class_fd"][str(k)] = metrics.frechet_distance(f_real[mine], embedder.embed(fake))
    return out


def fit_classifier(train, val, seed: int, options: dict, log=None) -> ImageClassifier:
    return ImageClassifier(seed=seed).fit(train, val, progress=False, log=log, **options)


def augmentation(gan: ImageGAN, splits, *, minority: int | None = None, n_synthetic: int | None = None,
                 seeds=(0,), options: dict | None = None, n_boot: int = 1000, baseline=None, log=print) -> dict:
    """Train-on-real versus train-on-real-plus-synthetic for the minority class: ``n_synthetic`` generated
    images of class ``minority`` (default: the smallest class, enough images to match the largest) are
    added to the training set; the same classifier recipe is trained on both sets with each seed, and the
    test AUROC and minority-class sensitivity (at each model's validation-chosen threshold) are compared.
    Intervals are paired bootstrap 95% intervals of the difference over the test set, per seed; the
    ``mean_delta`` averages the seeds. ``baseline``: an already trained real-only classifier for the
    first seed."""
    if not gan.num_classes:
        raise ValueError("the augmentation experiment needs a class-conditional ImageGAN")
    counts = np.bincount(splits.train.y.numpy(), minlength=gan.num_classes)
    minority = int(np.argmin(counts)) if minority is None else int(minority)
    n_synthetic = int(counts.max() - counts[minority]) if n_synthetic is None else int(n_synthetic)
    if n_synthetic < 1:
        raise ValueError(f"n_synthetic must be at least 1, got {n_synthetic}")
    test = splits.test
    y = test.y.numpy()
    sens = "sensitivity" if minority == 1 else "specificity"  # binary metrics call class 1 positive
    runs = []
    for i, seed in enumerate(seeds):
        t0 = time.perf_counter()
        synthetic = gan.sample(n_synthetic, label=minority, seed=1000 + seed)
        plus = ArrayDataset(torch.cat([splits.train.x, synthetic]),
                            torch.cat([splits.train.y, torch.full((n_synthetic,), minority, dtype=torch.int64)]))
        real_model = baseline if (i == 0 and baseline is not None) else fit_classifier(splits.train, splits.val, seed,
                                                                                      options or {})
        plus_model = fit_classifier(plus, splits.val, seed, options or {})
        row = {"seed": seed}
        probs = {}
        for name, model in (("real", real_model), ("real_plus_synthetic", plus_model)):
            probs[name] = model.scores(model.predict(test.x))
            m = model.evaluate(test)
            row[f"auroc_{name}"] = m["auroc"]
            row[f"sensitivity_{name}"] = m[sens]
            row[f"threshold_{name}"] = model.threshold
        for metric, key, thresholds in (("auroc", "auroc", (None, None)),
                                        (sens, "sensitivity", (real_model.threshold, plus_model.threshold))):
            d = metrics.paired_bootstrap_delta(y, probs["real"], probs["real_plus_synthetic"], metric, n_boot=n_boot,
                                               seed=seed, threshold_a=thresholds[0], threshold_b=thresholds[1])
            row[f"delta_{key}"] = {k: d[k] for k in ("delta", "lo", "hi")}
        runs.append(row)
        if log:
            log(f"utility seed {seed}: AUROC {row['auroc_real']:.3f} -> {row['auroc_real_plus_synthetic']:.3f}, "
                f"minority sensitivity {row['sensitivity_real']:.3f} -> {row['sensitivity_real_plus_synthetic']:.3f} "
                f"({time.perf_counter() - t0:.0f} s)")
    mean = {k: float(np.mean([r[k] for r in runs])) for k in ("auroc_real", "auroc_real_plus_synthetic",
                                                               "sensitivity_real", "sensitivity_real_plus_synthetic")}
    return {**mean, "minority": minority, "n_synthetic": n_synthetic, "n_test": len(test), "seeds": list(seeds),
            "runs": runs}


def train_synthesis_run(out, *, data=None, test=None, val_fraction: float = 0.15, seed: int = 0,
                        layers: str = "medkern", arch: dict | None = None, options: dict | None = None,
                        classifier_options: dict | None = None, utility: bool = True, utility_seeds=(0,),
                        n_boot: int = 1000, reader: dict | None = None, resume: bool = False, log=print) -> dict:
    """Loads ``data`` (see ``medkern.data.load``; images with class labels), trains an ``ImageGAN`` and
    writes ``out``: ``model.pt``, ``checkpoint.pt``, ``samples/`` (a grid per epoch), ``samples.png``,
    ``history.csv``, ``losses.png``, ``embedder.pt`` (the classifier whose embeddings the distances use)
    and ``metrics.json``. Returns the metrics record."""
    from .. import viz
    from ..viz.gan import gan_curves, image_grid

    out = Path(out)
    splits = datasets.load(data, test=test, task="classify", val_fraction=val_fraction, seed=seed,
                           test_fraction=0.2, **(reader or {}))
    if splits.train.x.dim() != 4:
        raise ValueError(f"{splits.source}: synthesis needs images, got items of shape {tuple(splits.train.x.shape[1:])}")
    out.mkdir(parents=True, exist_ok=True)
    say = log or (lambda s: None)
    say(f"data {splits.source}: train {len(splits.train)}, val {len(splits.val) if splits.val else 0}, "
        f"test {len(splits.test) if splits.test else 0}")
    gan = ImageGAN(layers=layers, seed=seed, **(arch or {}))
    gan.class_names = list(splits.class_names)
    t0 = time.perf_counter()
    gan.fit(splits.train, out=out, resume=resume, log=log, **(options or {}))
    train_seconds = sum(h["seconds"] for h in gan.history)
    gan.save(out / MODEL_FILE)
    viz.write_history(gan.history, out / "history.csv")
    gan_curves(gan.history, out / "losses.png")
    rows = max(gan.num_classes, 1)
    image_grid(torch.cat([gan.sample(8, label=k if gan.num_classes else None, seed=k) for k in range(rows)]),
               out / "samples.png", ncol=8)
    say(f"GAN trained for {len(gan.history)} epochs in {train_seconds:.0f} s; measuring samples")
    embedder = fit_classifier(splits.train, splits.val, seed, classifier_options or {})
    embedder.class_names = list(splits.class_names)
    embedder.save(out / EMBEDDER_FILE)
    record = {"data": splits.source, "class_names": gan.class_names, "layers": layers, "arch": gan.arch,
              "train": gan.train_config, "epochs_run": len(gan.history), "train_seconds": train_seconds,
              **quality(gan, embedder, splits.train, splits.test, seed=seed)}
    record["embedder_test_auroc"] = embedder.evaluate(splits.test)["auroc"] if splits.test is not None else None
    record["fd_below_blurred"] = record["fd"] < record["blurred"]["fd"]
    if utility and gan.num_classes and splits.test is not None:
        record["augmentation"] = augmentation(gan, splits, seeds=tuple(utility_seeds), options=classifier_options,
                                              n_boot=n_boot, baseline=embedder, log=log)
    record["seconds_total"] = time.perf_counter() - t0
    viz.write_json(record, out / "metrics.json")
    return record


def sample_run(run_dir, n: int, *, label: int | None = None, out=None, seed: int = 0) -> list[Path]:
    """``n`` images from the run's generator as PNGs in ``out`` (default ``run_dir/generated``), with a
    ``grid.png`` of them."""
    from ..viz.gan import image_grid, write_pngs

    run_dir = Path(run_dir)
    gan = ImageGAN.load(run_dir / MODEL_FILE)
    images = gan.sample(n, label=label, seed=seed)
    out = Path(out) if out is not None else run_dir / "generated"
    paths = write_pngs(images, out, prefix="sample" if label is None else f"class{label}")
    if n:
        image_grid(images, out / "grid.png")
    return paths
