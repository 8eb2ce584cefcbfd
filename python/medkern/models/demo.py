"""``medkern demo``, the main job: a patched-model correctness check, then an image classifier, an ECG
sequence classifier and a (short) volume classifier trained on the built-in synthetic data, their test
metrics and report plots, a short conditional GAN run on the same images with its sample-quality metrics,
and the speed of the image and ECG models built from medkern layers against the same models built from
torch layers."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from .. import data as datasets, viz
from . import ImageClassifier, SequenceClassifier, VolumeClassifier, speed

SHOWN = ("auroc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1")
# The volume section, sized to add under 20 s to the demo (about 15 s on two cores): a 3-D network costs
# about a volume's side times more per item than a 2-D one per image, so fewer, smaller volumes and a
# narrower network.
VOLUME_SHARE, VOLUME_SIZE, VOLUME_WIDTH, VOLUME_EPOCHS = 4, 20, 8, 12


def patched_cnn_check(log=print) -> bool:
    """A small CNN computed by torch, then by medkern after ``medkern.patch``: the outputs must agree."""
    import medkern

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                torch.nn.Conv2d(8, 16, 3, stride=2, padding="valid"), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 2))
    x = torch.randn(4, 1, 28, 28)
    expected = model(x)
    medkern.patch(model)
    err = (model(x) - expected).abs().max().item()
    log(f"patched CNN vs torch on 4x1x28x28: max abs difference {err:.2e} "
        f"({sum(type(m).__module__.startswith('medkern.') for m in model.modules())} layers swapped)")
    return err <= 1e-4


def _train_and_report(name, model, splits, out: Path, epochs: int, n_boot: int, log, **options) -> dict:
    t0 = time.perf_counter()
    model.class_names = splits.class_names
    model.fit(splits.train, splits.val, epochs=epochs, progress=False, log=log, **options)
    seconds = time.perf_counter() - t0
    record = viz.write_run(out / name, model, test=splits.test, val=splits.val, history=model.result.history,
                           n_boot=n_boot, extra={"data": splits.source, "train_seconds": seconds})
    m = record["test"]
    shown = ", ".join(f"{k} {m[k]:.3f} [{m['ci'][k][0]:.3f}, {m['ci'][k][1]:.3f}]" for k in SHOWN)
    log(f"{name}: {type(model).__name__} trained in {seconds:.0f} s ({len(model.result.history)} epochs, "
        f"{len(splits.train)} training items); test: {shown}")
    return record


def _synthesize(images, embedder, out: Path, epochs: int, n_items: int, log):
    """A short class-conditional GAN run on part of the training images, measured in the embedding space
    of the image classifier just trained on the same data. Returns the GAN and its training images."""
    from ..viz.gan import gan_curves, image_grid
    from . import ImageGAN, synthesis

    train = images.train.subset(range(min(n_items, len(images.train))))
    t0 = time.perf_counter()
    # A run of a few hundred steps needs larger steps than the default recipe's 2e-4 (measured on this data:
    # FD 24 at the default, 11 with these, against 22 for the blurred real images).
    gan = ImageGAN(width=16, latent_dim=32).fit(train, epochs=epochs, lr_g=1e-3, lr_d=1e-3, beta1=0.0, beta2=0.99,
                                                progress=False, log=None)
    seconds = time.perf_counter() - t0
    record = {"data": images.source, "n_train": len(train), "train_seconds": seconds, "epochs": epochs,
              **synthesis.quality(gan, embedder, train, images.test)}
    out = out / "synthesis"
    out.mkdir(parents=True, exist_ok=True)
    image_grid(torch.cat([gan.sample(8, label=k, seed=k) for k in range(gan.num_classes)]), out / "samples.png")
    gan_curves(gan.history, out / "losses.png")
    viz.write_json(record, out / "metrics.json")
    log(f"synthesis: conditional ImageGAN trained in {seconds:.0f} s ({epochs} epochs, {len(train)} images); "
        f"FD {record['fd']:.2f} (blurred real images: {record['blurred']['fd']:.2f}), KID {record['kid']:.4f}, "
        f"precision {record['precision']:.2f}, recall {record['recall']:.2f}, MS-SSIM diversity "
        f"{record['diversity_ms_ssim']:.3f} (real: {record['diversity_ms_ssim_real']:.3f}), memorisation ratio "
        f"{record['memorization_ratio']:.2f} ({'passed' if record['memorization']['passed'] else 'FAILED'})")
    return gan, train


def run(out="medkern-demo", *, n_train: int = 1500, n_test: int = 500, epochs: int = 15, speed_repeats: int = 3,
        speed_items: int = 512, n_boot: int = 200, gan_epochs: int = 24, gan_items: int = 512,
        volume_epochs: int = VOLUME_EPOCHS, log=print) -> int:
    if not patched_cnn_check(log):
        print("error: patched model disagrees with torch", file=sys.stderr)
        return 1
    out = Path(out)
    images = datasets.load(None, task="classify", n_train=n_train, n_test=n_test, seed=0)
    ecg = datasets.load(None, task="sequence", n_train=n_train, n_test=n_test, seed=0)
    image_model = ImageClassifier(width=16, depth=3)
    ecg_model = SequenceClassifier(hidden=32, conv_channels=16)
    log(f"\ntraining on synthetic data ({images.source}; {ecg.source}), reports in {out}/")
    _train_and_report("image", image_model, images, out, epochs, n_boot, log)
    _train_and_report("ecg", ecg_model, ecg, out, epochs, n_boot, log)
    if volume_epochs:
        volumes = datasets.load("synthetic:nodules", n_train=max(n_train // VOLUME_SHARE, 2),
                                n_test=max(n_test // VOLUME_SHARE, 1), size=VOLUME_SIZE, seed=0)
        # About 120 steps: too few for the default weight average (decay 0.99 a step) to leave its start behind.
        _train_and_report("volume", VolumeClassifier(width=VOLUME_WIDTH), volumes, out, volume_epochs, n_boot, log,
                          ema=None)
    gan, gan_train = _synthesize(images, image_model, out, gan_epochs, gan_items, log) if gan_epochs else (None, None)
    log(f"\nspeed on this machine ({torch.get_num_threads()} threads), same weights, interleaved; an epoch is "
        f"{min(speed_items, len(images.train))} items in batches of 32 (the GAN's: its training images in batches "
        f"of 64), median of {speed_repeats}:")
    log(speed.HEADER)
    for name, model, splits in (("image ResNet", image_model, images), ("ECG conv+GRU", ecg_model, ecg)):
        items = splits.train.subset(range(min(speed_items, len(splits.train))))
        result = speed.compare_layers(model, items, repeats=speed_repeats)
        for row in speed.format_rows(name, result):
            log(row)
    if gan is not None:
        gan_speed = speed.compare_gan_layers(gan, gan_train, repeats=speed_repeats)
        for row in speed.format_rows("conditional DCGAN", gan_speed, latency_label="generate 64"):
            log(row)
    folders = ["image", "ecg", *(["volume"] if volume_epochs else []), *(["synthesis"] if gan is not None else [])]
    log(f"\nplots and metrics.json in {', '.join(f'{out}/{name}' for name in folders)}")
    return 0
