"""One epoch of adversarial training for ``ImageGAN``: discriminator steps with an optional gradient
penalty, generator steps, the generator's moving average, and the differentiable augmentations both
players see."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import losses as L
from .gan_config import LOSSES, NEEDS_REAL_FOR_G, GANConfig
from .progress import Batches


def translate(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Each image shifted by its own whole-pixel offset of up to ``ratio`` of its size, zero-filled:
    a gather, so gradients flow to the pixels kept (DiffAugment's translation)."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (n, 1, 1), device=x.device)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx + 1).clamp(0, w + 1)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Each image with a square of ``ratio`` of its size, at its own random centre, set to zero."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + 1 - ch % 2, (n, 1, 1), device=x.device) - ch // 2
    cx = torch.randint(0, w + 1 - cw % 2, (n, 1, 1), device=x.device) - cw // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= cy) & (rows < cy + ch) & (cols >= cx) & (cols < cx + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


AUGMENT = {"translation": translate, "cutout": cutout}


def augment(x: torch.Tensor, names) -> torch.Tensor:
    for name in names:
        x = AUGMENT[name](x)
    return x


def _split(out):
    """(score, class logits or None) from a discriminator's output."""
    return out if isinstance(out, tuple) else (out, None)


class Players:
    """The generator, the discriminator, their optimisers and the generator's average, stepped together."""

    def __init__(self, generator, discriminator, config: GANConfig, average=None):
        self.g, self.d, self.config, self.average = generator, discriminator, config, average
        betas = (config.beta1, config.beta2)
        self.opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_d, betas=betas)
        self.d_loss, self.g_loss = LOSSES[config.loss]
        self.d_updates = 0  # counts discriminator steps, for the lazy penalty

    def _judge(self, x, labels):
        return _split(self.d(augment(x, self.config.augment), labels))

    def _latent(self, n, device):
        return torch.randn(n, self.g.latent_dim, device=device)

    def d_step(self, real, labels) -> dict:
        config = self.config
        with torch.no_grad():
            fake = self.g(self._latent(len(real), real.device), labels)
        real_out, real_cls = self._judge(real, labels)
        fake_out, fake_cls = self._judge(fake, labels)
        loss = self.d_loss(real_out, fake_out)
        if real_cls is not None:
            loss = loss + L.auxiliary_classifier_loss(real_cls, labels) + L.auxiliary_classifier_loss(fake_cls, labels)
        penalty = torch.zeros((), device=real.device)
        if config.penalty is not None and self.d_updates % config.penalty_every == 0:
            def critic(t):
                return self._judge(t, labels)[0]
            weight = config.penalty_weight * config.penalty_every
            penalty = (L.r1_penalty(critic, real, weight=weight) if config.penalty == "r1" else
                       L.gradient_penalty(critic, real, fake, weight=weight))
        self.opt_d.zero_grad(set_to_none=True)
        (loss + penalty).backward()
        self.opt_d.step()
        self.d_updates += 1
        return {"d_loss": loss.item(), "penalty": penalty.item(), "d_real": real_out.mean().item(),
                "d_fake": fake_out.mean().item()}

    def g_step(self, real, labels) -> dict:
        # The discriminator's weights need no gradients here: only its input gradient reaches the generator.
        self.d.requires_grad_(False)
        try:
            fake = self.g(self._latent(len(real), real.device), labels)
            fake_out, fake_cls = self._judge(fake, labels)
            real_out = None
            if self.config.loss in NEEDS_REAL_FOR_G:
                with torch.no_grad():
                    real_out = self._judge(real, labels)[0]
            loss = self.g_loss(real_out, fake_out)
            if fake_cls is not None:
                loss = loss + L.auxiliary_classifier_loss(fake_cls, labels)
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_g.step()
        finally:
            self.d.requires_grad_(True)
        if self.average is not None:
            self.average.update_parameters(self.g)
        return {"g_loss": loss.item()}

    def state(self) -> dict:
        return {"generator": self.g.state_dict(), "discriminator": self.d.state_dict(),
                "average": None if self.average is None else self.average.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "d_updates": self.d_updates}

    def load_state(self, state: dict) -> None:
        self.g.load_state_dict(state["generator"])
        self.d.load_state_dict(state["discriminator"])
        if self.average is not None:
            self.average.load_state_dict(state["average"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.d_updates = state["d_updates"]


def train_epoch(players: Players, loader, *, device, progress=None) -> dict:
    """One pass over ``loader`` (images in [0, 1], labels): a discriminator step per batch and a generator
    step every ``d_steps`` batches. Returns the epoch's mean of each logged quantity."""
    config = players.config
    players.g.train()
    players.d.train()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    batches = Batches(loader, progress)
    for i, (x, y) in enumerate(batches):
        x, y = x.to(device) * 2 - 1, y.to(device)
        if config.flip:
            x = torch.where(torch.rand(len(x), 1, 1, 1, device=device) < 0.5, x.flip(3), x)
        logged = players.d_step(x, y)
        if (i + 1) % config.d_steps == 0:
            logged.update(players.g_step(x, y))
        for k, v in logged.items():
            sums[k] = sums.get(k, 0.0) + v
            counts[k] = counts.get(k, 0) + 1
        if "g_loss" in sums:
            batches.show(d=f"{sums['d_loss'] / counts['d_loss']:.3f}", g=f"{sums['g_loss'] / counts['g_loss']:.3f}")
    return {k: sums[k] / counts[k] for k in sums}
