"""``ImageGAN``: a class-conditional DCGAN for medical images, built from ``medkern.nn`` layers, trained with
any loss of ``medkern.losses``."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .. import train as training
from ..data import ArrayDataset
from ..train.gan_config import GANConfig
from ..train.gan_loop import Players, train_epoch
from . import networks
from .base import FORMAT, BaseModel, as_dataset
from .gan_networks import CONDITIONING, Discriminator, Generator

CHECKPOINT = "checkpoint.pt"
SAMPLES_DIR = "samples"
SNAPSHOT_PER_CLASS = 8


class ImageGAN(BaseModel):
    """Generator and discriminator for images ``(N, C, H, W)`` in [0, 1] with even sides of at least 8.
    With two or more classes in the training labels and ``conditioning`` set, both players are
    class-conditional (``"projection"`` discriminator or ``"acgan"`` auxiliary classifier) and ``sample``
    takes a label. ``spectral_norm`` normalises every discriminator layer (Miyato et al. 2018).

    >>> gan = ImageGAN().fit(splits.train, epochs=100, out="runs/gan")
    >>> images = gan.sample(64, label=0)      # (64, C, H, W) in [0, 1], from the averaged generator
    """

    TASK = "synthesize"
    ARCH = {"latent_dim": 64, "width": 32, "conditioning": "projection", "spectral_norm": False}

    def __init__(self, *, layers: str = "medkern", seed: int = 0, **arch):
        super().__init__(layers=layers, seed=seed, **arch)
        if self.arch["conditioning"] not in CONDITIONING:
            raise ValueError(f"conditioning must be one of {CONDITIONING}, got {self.arch['conditioning']!r}")
        self.history: list[dict] = []
        self.generator = self.discriminator = self.average = None

    # -- building -------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Classes the players condition on (0: unconditional)."""
        return self.shape.get("num_classes", 0) if self.arch["conditioning"] else 0

    def _build(self) -> None:
        torch.manual_seed(self.seed)
        size = tuple(self.shape["image_size"])
        self.generator = networks.build(Generator, self.layers, self.shape["in_channels"], size,
                                        num_classes=self.num_classes, latent_dim=self.arch["latent_dim"],
                                        width=self.arch["width"])
        self.discriminator = networks.build(Discriminator, self.layers, self.shape["in_channels"], size,
                                            num_classes=self.num_classes, conditioning=self.arch["conditioning"],
                                            width=self.arch["width"])
        if self.arch["spectral_norm"]:
            from torch.nn.utils.parametrizations import spectral_norm
            for m in list(self.discriminator.modules()):
                if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Embedding)):
                    spectral_norm(m)

    def _make_average(self, decay):
        from torch.optim.swa_utils import AveragedModel

        def update(averaged, current, num_averaged):
            # The decay ramps up from 0.1 (Tan & Le's warm-up), so that a short run's average is not its
            # random initialisation.
            n = float(num_averaged)
            pairs = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
            if pairs:
                torch._foreach_lerp_([a for a, _ in pairs], [c for _, c in pairs],
                                     1.0 - min(decay, (1.0 + n) / (10.0 + n)))
            for a, c in zip(averaged, current):
                if not a.is_floating_point():  # batch-norm's step counter
                    a.copy_(c)
        return AveragedModel(self.generator, multi_avg_fn=update, use_buffers=True)

    @staticmethod
    def _data_shape(ds: ArrayDataset) -> dict:
        x = ds.x
        if x.dim() != 4:
            raise ValueError(f"train.x must hold (N, C, H, W) images, got shape {tuple(x.shape)}")
        if not ds.is_classification:
            raise ValueError(f"train.y must be int64 class labels (N,), got {ds.y.dtype} {tuple(ds.y.shape)}")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"train.x must be images in [0, 1], got values in [{lo:.3g}, {hi:.3g}]")
        counts = torch.bincount(ds.y).tolist()
        return {"in_channels": int(x.shape[1]), "image_size": [int(x.shape[2]), int(x.shape[3])],
                "num_classes": len(counts), "class_counts": counts}

    # -- training -------------------------------------------------------------------------------------
    def fit(self, train, *, out=None, resume: bool = False, log=print, **options) -> "ImageGAN":
        """Trains on ``train`` (an ``ArrayDataset`` or ``(x, y)`` of images in [0, 1] and int64 labels).
        ``options`` are ``medkern.train.gan_config.GANConfig`` fields. With ``out``, a resumable
        ``checkpoint.pt`` is rewritten atomically after every epoch and sample grids from a fixed latent
        batch go to ``out/samples/``."""
        train = as_dataset(train, "train")
        config = GANConfig.with_options({"seed": self.seed, **options})
        self.shape = self._data_shape(train)
        if self.num_classes and sum(c > 0 for c in self.shape["class_counts"]) < 2:
            self.shape["num_classes"] = 0  # one class: nothing to condition on
        self._build()
        device = training.context(config.device).device
        self.generator.to(device)
        self.discriminator.to(device)
        self.average = self._make_average(config.ema) if config.ema is not None else None
        players = Players(self.generator, self.discriminator, config, self.average)
        torch.manual_seed(config.seed)
        loader = training.make_loader(train, config.batch_size, shuffle=True, seed=config.seed,
                                      drop_last=len(train) > config.batch_size)
        out = Path(out) if out is not None else None
        fixed = self._fixed_latent(device)
        self.history, start, elapsed = [], 0, 0.0
        ckpt = out / CHECKPOINT if out is not None else None
        if resume and ckpt is not None and ckpt.is_file():
            state = training.load_checkpoint(ckpt, map_location=device)
            players.load_state(state["players"])
            torch.set_rng_state(state["rng"])
            self.history, start, elapsed = state["history"], state["epoch"], state["elapsed"]
            if log:
                log(f"resumed from {ckpt} after epoch {start}")
        say = log or (lambda s: None)
        for epoch in range(start, config.epochs):
            if config.time_limit is not None and elapsed >= config.time_limit:
                say(f"time limit {config.time_limit:.0f} s reached after epoch {epoch}")
                break
            loader.sampler.set_epoch(epoch)
            t0 = time.perf_counter()
            row = train_epoch(players, loader, device=device,
                              progress=f"epoch {epoch + 1}/{config.epochs}" if config.progress else None)
            seconds = time.perf_counter() - t0
            elapsed += seconds
            self.history.append({"epoch": epoch + 1, **row, "seconds": seconds})
            say(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()) + f", {seconds:.1f} s")
            if out is not None:
                if (epoch + 1) % config.snapshot_every == 0 or epoch + 1 == config.epochs:
                    self._snapshot(fixed, out / SAMPLES_DIR / f"epoch_{epoch + 1:04d}.png")
                training.save_atomic({"players": players.state(), "rng": torch.get_rng_state(),
                                      "history": self.history, "epoch": epoch + 1, "elapsed": elapsed}, ckpt)
        self.train_config = config.to_dict()
        self.generator.eval()
        self.discriminator.eval()
        return self

    # -- sampling -------------------------------------------------------------------------------------
    def _require(self):
        if self.generator is None:
            raise RuntimeError("ImageGAN is not trained: call fit() or load() first")
        return self.average.module if self.average is not None else self.generator

    def _fixed_latent(self, device):
        """The latent batch behind every epoch's snapshot: ``SNAPSHOT_PER_CLASS`` per class, seeded."""
        rows = max(self.num_classes, 1)
        g = torch.Generator().manual_seed(self.seed + 1)
        z = torch.randn(rows * SNAPSHOT_PER_CLASS, self.arch["latent_dim"], generator=g).to(device)
        labels = torch.arange(rows).repeat_interleave(SNAPSHOT_PER_CLASS).to(device)
        return z, labels

    @torch.no_grad()
    def _generate(self, z, labels) -> torch.Tensor:
        net = self._require()
        was_training = net.training
        net.eval()
        try:
            return ((net(z, labels if self.num_classes else None) + 1) / 2).clamp(0, 1)
        finally:
            net.train(was_training)

    def _snapshot(self, fixed, path) -> None:
        from ..viz.gan import image_grid
        image_grid(self._generate(*fixed).cpu(), path, ncol=SNAPSHOT_PER_CLASS)

    def sample(self, n: int, label: int | None = None, *, seed: int | None = None,
               batch_size: int = 256) -> torch.Tensor:
        """``n`` images (n, C, H, W) in [0, 1] from the averaged generator (the raw one without ``ema``).
        ``label``: the class to draw (conditional models); None draws labels in the training set's class
        proportions. ``seed`` makes the draw reproducible."""
        net = self._require()
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        if label is not None:
            if not self.num_classes:
                raise ValueError("label: this ImageGAN is unconditional; sample without a label")
            if not isinstance(label, (int, np.integer)) or not 0 <= label < self.num_classes:
                raise ValueError(f"label must be a class index in [0, {self.num_classes}), got {label!r}")
        g = torch.Generator().manual_seed(int(seed) if seed is not None else int(torch.randint(2**62, ())))
        device = next(net.parameters()).device
        z = torch.randn(n, self.arch["latent_dim"], generator=g)
        if label is not None:
            labels = torch.full((n,), int(label), dtype=torch.int64)
        elif self.num_classes:
            p = torch.tensor(self.shape["class_counts"], dtype=torch.float64)
            labels = torch.multinomial(p / p.sum(), n, replacement=True, generator=g) if n else torch.zeros(0, dtype=torch.int64)
        else:
            labels = torch.zeros(n, dtype=torch.int64)
        parts = [self._generate(z[i:i + batch_size].to(device), labels[i:i + batch_size].to(device)).cpu()
                 for i in range(0, n, batch_size)]
        c, (h, w) = self.shape["in_channels"], self.shape["image_size"]
        return torch.cat(parts) if parts else torch.zeros(0, c, h, w)

    # -- saving ---------------------------------------------------------------------------------------
    def state(self) -> dict:
        self._require()
        cpu = lambda m: {k: v.cpu() for k, v in m.state_dict().items()}  # noqa: E731
        return {"format": FORMAT, "class": type(self).__name__, "arch": self.arch, "layers": self.layers,
                "seed": self.seed, "shape": self.shape, "class_names": list(self.class_names),
                "history": self.history, "train_config": self.train_config,
                "generator": cpu(self.generator), "discriminator": cpu(self.discriminator),
                "generator_ema": None if self.average is None else cpu(self.average.module)}

    @classmethod
    def from_state(cls, state: dict, layers: str | None = None) -> "ImageGAN":
        model = cls(layers=layers or state["layers"], seed=state["seed"], **state["arch"])
        model.shape, model.class_names = state["shape"], state["class_names"]
        model.history, model.train_config = state["history"], state["train_config"]
        model._build()
        model.generator.load_state_dict(state["generator"])
        model.discriminator.load_state_dict(state["discriminator"])
        if state["generator_ema"] is not None:
            model.average = model._make_average(0.999)  # the decay only matters while training
            model.average.module.load_state_dict(state["generator_ema"])
        model.generator.eval()
        model.discriminator.eval()
        return model
