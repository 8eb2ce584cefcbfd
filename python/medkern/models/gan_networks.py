"""The generator and discriminator of ``ImageGAN``, written with torch's layer classes like ``networks``
(``networks.build`` swaps in medkern's): a DCGAN pair (Radford et al. 2016) whose discriminator can be
class-conditional by projection (Miyato & Koyama 2018) or with an auxiliary classifier (Odena et al. 2017)."""
from __future__ import annotations

import torch
from torch import nn

from ..losses import projection_discriminator_term

CONDITIONING = (None, "projection", "acgan")


def upsamplings(height: int, width: int) -> int:
    """How many 2x steps the generator takes: as many as divide both sides, up to 4, keeping the first
    feature map at least 4 pixels on a side (28 -> 7x7 then two steps; 64 -> 4x4 then four)."""
    steps = 0
    while steps < 4 and height % 2 ** (steps + 1) == 0 and width % 2 ** (steps + 1) == 0 \
            and min(height, width) // 2 ** (steps + 1) >= 4:
        steps += 1
    if steps == 0:
        raise ValueError(f"image size {height}x{width}: the generator doubles the resolution, so both sides must "
                         "be even and at least 8")
    return steps


class Generator(nn.Module):
    """Latent ``z`` (and, when conditional, a learned class embedding of the same size, concatenated) ->
    a linear layer to a (width * 2**steps, H / 2**steps, W / 2**steps) map -> ``steps`` times
    [ConvTranspose2d(4, stride 2, padding 1), BatchNorm, ReLU], halving the channels each time -> a 3x3 conv
    and tanh: images in [-1, 1]."""

    def __init__(self, out_channels: int, image_size: tuple[int, int], *, num_classes: int = 0,
                 latent_dim: int = 64, width: int = 32):
        super().__init__()
        h, w = image_size
        steps = upsamplings(h, w)
        self.start = (width * 2 ** steps, h // 2 ** steps, w // 2 ** steps)
        self.latent_dim = latent_dim
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        c = self.start[0]
        self.project = nn.Linear(latent_dim * (2 if num_classes else 1), c * self.start[1] * self.start[2], bias=False)
        blocks = [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        for _ in range(steps):
            blocks += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU(inplace=True)]
            c //= 2
        blocks += [nn.Conv2d(c, out_channels, 3, 1, 1), nn.Tanh()]
        self.body = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)
        return self.body(self.project(z).view(-1, *self.start))


class Discriminator(nn.Module):
    """A 3x3 conv, then ``steps`` times [Conv2d(4, stride 2, padding 1), LeakyReLU(0.2)] doubling the
    channels, summed over space into features phi; the output is ``linear(phi)``, plus ``<embed(y), phi>``
    for a projection discriminator. An auxiliary-classifier discriminator returns class logits beside it.
    No batch normalisation: the gradient penalties need each sample's output to depend on that sample only."""

    def __init__(self, in_channels: int, image_size: tuple[int, int], *, num_classes: int = 0,
                 conditioning: str | None = "projection", width: int = 32):
        super().__init__()
        if conditioning not in CONDITIONING:
            raise ValueError(f"conditioning must be one of {CONDITIONING}, got {conditioning!r}")
        steps = upsamplings(*image_size)
        layers, c = [nn.Conv2d(in_channels, width, 3, 1, 1), nn.LeakyReLU(0.2)], width
        for _ in range(steps):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1), nn.LeakyReLU(0.2)]
            c *= 2
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(c, 1)
        self.conditioning = conditioning if num_classes else None
        self.embed = nn.Embedding(num_classes, c) if self.conditioning == "projection" else None
        self.classify = nn.Linear(c, num_classes) if self.conditioning == "acgan" else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        """The realness score (N,); for ``acgan``, ``(score, class_logits)``."""
        phi = self.features(x).sum(dim=(2, 3))
        score = self.out(phi).squeeze(1)
        if self.embed is not None:
            score = score + projection_discriminator_term(phi, labels, self.embed.weight)
        if self.classify is not None:
            return score, self.classify(phi)
        return score
