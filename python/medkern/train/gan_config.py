"""The options of one GAN training run (``ImageGAN.fit``), checked once, as plain values."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .. import losses as L
from .config import require_positive

# loss name -> (discriminator loss(real_out, fake_out), generator loss(real_out, fake_out)); the
# relativistic generator losses compare with the real outputs, the others ignore them.
LOSSES = {
    "minimax": (L.minimax_d_loss, lambda r, f: L.nonsaturating_g_loss(f)),
    "lsgan": (L.lsgan_d_loss, lambda r, f: L.lsgan_g_loss(f)),
    "hinge": (L.hinge_d_loss, lambda r, f: L.hinge_g_loss(f)),
    "wasserstein": (L.wasserstein_d_loss, lambda r, f: L.wasserstein_g_loss(f)),
    "relativistic": (L.relativistic_d_loss, L.relativistic_g_loss),
    "relativistic_hinge": (lambda r, f: L.relativistic_d_loss(r, f, kind="hinge"),
                           lambda r, f: L.relativistic_g_loss(r, f, kind="hinge")),
}
NEEDS_REAL_FOR_G = frozenset({"relativistic", "relativistic_hinge"})
PENALTIES = (None, "r1", "wgan-gp")
AUGMENTATIONS = ("translation", "cutout")


@dataclass
class GANConfig:
    """``loss`` names a pair of ``medkern.losses`` (``LOSSES``); ``penalty`` adds R1 on real images
    (``penalty_weight`` is R1's gamma) or WGAN-GP on interpolates to the discriminator's loss, every
    ``penalty_every`` discriminator steps (lazy regularisation, Karras et al. 2020, with the weight scaled up
    to match). ``d_steps`` discriminator steps run per generator step. ``ema`` keeps an exponential moving
    average of the generator (weights and batch-norm statistics) with this decay per generator step;
    ``sample`` draws from it. ``augment`` lists differentiable augmentations applied to every image the
    discriminator sees, real and generated (DiffAugment, Zhao et al. 2020), which keeps it from memorising
    a few hundred training images; ``flip`` adds mirrored copies of the training images. ``time_limit``
    (seconds) ends training after the epoch that crosses it."""

    epochs: int = 200
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    loss: str = "hinge"
    penalty: str | None = "r1"
    penalty_weight: float = 1.0
    penalty_every: int = 4
    d_steps: int = 1
    ema: float | None = 0.999
    augment: tuple = AUGMENTATIONS
    flip: bool = True
    time_limit: float | None = None
    snapshot_every: int = 1
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self):
        require_positive(self, "epochs", "batch_size", "d_steps", "penalty_every", "snapshot_every", integer=True)
        require_positive(self, "lr_g", "lr_d", "penalty_weight")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        if self.penalty not in PENALTIES:
            raise ValueError(f"penalty must be one of {PENALTIES}, got {self.penalty!r}")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise ValueError(f"ema must be in (0, 1) or None, got {self.ema!r}")
        if isinstance(self.augment, str):
            self.augment = tuple(a for a in self.augment.split(",") if a)
        self.augment = tuple(self.augment)
        unknown = sorted(set(self.augment) - set(AUGMENTATIONS))
        if unknown:
            raise ValueError(f"augment: unknown {unknown}; known: {list(AUGMENTATIONS)}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError(f"time_limit must be positive seconds or None, got {self.time_limit!r}")

    @classmethod
    def with_options(cls, options: dict) -> "GANConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown training option(s) {unknown}; known: {sorted(known)}")
        return cls(**options)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augment"] = list(self.augment)
        return d
