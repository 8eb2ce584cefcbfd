"""GAN loss benchmark cases: forward + backward of each loss on a PatchGAN output (64x1x30x30) against the
plain-torch eager composition a user would write, and a full WGAN-GP critic step (Wasserstein loss,
gradient penalty, backward through the critic's double backward, optimiser step) on a small DCGAN critic
built from medkern layers against the same critic built from torch layers. At this size the losses are
dominated by per-call overhead, not arithmetic: the floors show how far both are from the bytes."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import losses, nn as mnn


def _torch_minimax(r, f):
    return F.binary_cross_entropy_with_logits(r, torch.ones_like(r)) + \
        F.binary_cross_entropy_with_logits(f, torch.zeros_like(f))


def _torch_lsgan(r, f):
    return 0.5 * F.mse_loss(r, torch.ones_like(r)) + 0.5 * F.mse_loss(f, torch.zeros_like(f))


def _torch_hinge(r, f):
    return F.relu(1 - r).mean() + F.relu(1 + f).mean()


def _torch_relativistic(r, f):
    return F.binary_cross_entropy_with_logits(r - f.mean(), torch.ones_like(r)) + \
        F.binary_cross_entropy_with_logits(f - r.mean(), torch.zeros_like(f))


# name -> (medkern loss, torch composition)
LOSSES = {
    "minimax_d": (losses.minimax_d_loss, _torch_minimax),
    "hinge_d": (losses.hinge_d_loss, _torch_hinge),
    "lsgan_d": (losses.lsgan_d_loss, _torch_lsgan),
    "wasserstein_d": (losses.wasserstein_d_loss, lambda r, f: f.mean() - r.mean()),
    "nonsaturating_g": (lambda r, f: losses.nonsaturating_g_loss(f),
                        lambda r, f: F.binary_cross_entropy_with_logits(f, torch.ones_like(f))),
    "relativistic_d": (losses.relativistic_d_loss, _torch_relativistic),
}


@dataclass(frozen=True)
class GanLossCase:
    name: str
    loss: str
    N: int = 64
    H: int = 30

    @property
    def op(self) -> str:
        return f"{self.loss}_fwd_bwd"

    @property
    def shape(self) -> str:
        return f"{self.N}x1x{self.H}x{self.H} real+fake"

    def flops(self) -> float:
        return 0.0

    def bytes(self, itemsize: int) -> float:  # read real and fake, write both gradients
        return 4 * self.N * self.H * self.H * itemsize

    def build(self, device: str, dtype: torch.dtype):
        g = torch.Generator().manual_seed(0)
        r, f = (torch.randn(self.N, 1, self.H, self.H, generator=g, dtype=dtype).to(device).requires_grad_()
                for _ in range(2))
        ours, theirs = LOSSES[self.loss]

        def run(fn):
            return lambda: torch.autograd.grad(fn(r, f), (r, f), allow_unused=True)
        return run(ours), run(theirs)


def _dcgan_critic(lib, channels: int, width: int) -> torch.nn.Module:
    """DCGAN's discriminator without batch norm (WGAN-GP's advice), 32x32 input -> one score."""
    w = width
    return torch.nn.Sequential(
        lib.Conv2d(channels, w, 4, 2, 1), torch.nn.LeakyReLU(0.2),
        lib.Conv2d(w, 2 * w, 4, 2, 1), torch.nn.LeakyReLU(0.2),
        lib.Conv2d(2 * w, 4 * w, 4, 2, 1), torch.nn.LeakyReLU(0.2),
        lib.Conv2d(4 * w, 1, 4, 1, 0), torch.nn.Flatten())


def _torch_gradient_penalty(critic, real, fake, alpha):
    x = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return 10.0 * ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


@dataclass(frozen=True)
class CriticStepCase:
    """``medkern_layers``: the medkern side's critic is built from medkern layers (the issue's target);
    otherwise both sides use torch layers, which isolates what the fused losses and penalty contribute."""
    name: str = "wgan_gp_critic_step"
    medkern_layers: bool = True
    N: int = 16
    C: int = 3
    H: int = 32
    width: int = 16

    @property
    def op(self) -> str:
        return "wgan_gp_critic_step"

    @property
    def shape(self) -> str:
        layers = "medkern" if self.medkern_layers else "torch"
        return f"{self.N}x{self.C}x{self.H}x{self.H} DCGAN w{self.width} {layers}"

    def flops(self) -> float:
        return 0.0

    def bytes(self, itemsize: int) -> float:
        return 0.0

    def build(self, device: str, dtype: torch.dtype):
        torch.manual_seed(0)
        theirs = _dcgan_critic(torch.nn, self.C, self.width).to(device, dtype)
        ours = _dcgan_critic(mnn if self.medkern_layers else torch.nn, self.C, self.width).to(device, dtype)
        ours.load_state_dict(theirs.state_dict())
        g = torch.Generator().manual_seed(1)
        real, fake = (torch.randn(self.N, self.C, self.H, self.H, generator=g, dtype=dtype).to(device)
                      for _ in range(2))
        alpha = torch.rand(self.N, 1, 1, 1, generator=g, dtype=dtype).to(device)

        def step(critic, loss_fn):
            opt = torch.optim.SGD(critic.parameters(), lr=0.0)  # lr 0: every step sees the same weights

            def call():
                opt.zero_grad(set_to_none=True)
                loss_fn(critic).backward()
                opt.step()
            return call

        return (step(ours, lambda c: losses.wasserstein_d_loss(c(real), c(fake)) +
                     losses.gradient_penalty(c, real, fake, 10.0)),
                step(theirs, lambda c: c(fake).mean() - c(real).mean() + _torch_gradient_penalty(c, real, fake, alpha)))


CASES = [GanLossCase(f"{name}_patchgan", name) for name in LOSSES] + [
    CriticStepCase(), CriticStepCase("wgan_gp_step_torch_layers", medkern_layers=False)]
