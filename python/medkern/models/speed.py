"""Speed of a whole model built from medkern layers against the same model (same weights) built from
torch layers: one training epoch and batch-1 inference latency, interleaved in one process so that a
shared machine's load falls on both alike."""
from __future__ import annotations

import statistics
import time

import torch

from ..bench import timing
from ..train import TrainConfig, make_loader, train_one_epoch
from .base import Model
from .networks import LAYERS


def compare_layers(model: Model, train, *, batch_size: int = 32, repeats: int = 3, latency_repeats: int = 7,
                   min_round_s: float = 0.05) -> dict:
    """``{"epoch_s": {layers: median seconds}, "latency_ms": {layers: median ms}}`` for ``layers`` in
    ("medkern", "torch"), from a trained ``model`` and training data ``train`` (no augmentation, so the
    timings are of the network alone)."""
    state = model._require_network().state_dict()
    nets = {}
    for layers in LAYERS:
        nets[layers] = model._build(layers)
        nets[layers].load_state_dict(state)
    objective = model._objective(train, TrainConfig(batch_size=batch_size))
    loader = make_loader(train, batch_size, shuffle=True, seed=model.seed)
    optimizers = {k: torch.optim.AdamW(n.parameters(), lr=1e-4) for k, n in nets.items()}
    epochs: dict[str, list[float]] = {k: [] for k in nets}
    for _ in range(repeats):
        for k, net in nets.items():
            t0 = time.perf_counter()
            train_one_epoch(net, loader, objective, optimizers[k])
            epochs[k].append(time.perf_counter() - t0)
    x1 = train.x[:1]
    for net in nets.values():
        net.eval()

    def infer(net):
        def call():
            with torch.no_grad():
                return net(x1)
        return call
    latency = timing.compare({k: infer(n) for k, n in nets.items()}, repeats=latency_repeats, min_round_s=min_round_s)
    return {"epoch_s": {k: statistics.median(v) for k, v in epochs.items()},
            "latency_ms": {k: 1e3 * v for k, v in latency.items()}}


def compare_gan_layers(gan, train, *, repeats: int = 3, sample_n: int = 64, latency_repeats: int = 7,
                       min_round_s: float = 0.05) -> dict:
    """As ``compare_layers`` for a trained ``ImageGAN``: one adversarial training epoch (its own options,
    augmentation included) and the latency of generating ``sample_n`` images."""
    from ..train.gan_config import GANConfig
    from ..train.gan_loop import Players, train_epoch

    state = gan.state()
    config = GANConfig(**{**(gan.train_config or {}), "progress": False})
    players, generators = {}, {}
    for layers in LAYERS:
        twin = type(gan).from_state(state, layers=layers)
        players[layers] = Players(twin.generator, twin.discriminator, config)
        generators[layers] = twin.generator
    loader = make_loader(train, config.batch_size, shuffle=True, seed=gan.seed, drop_last=len(train) > config.batch_size)
    epochs: dict[str, list[float]] = {k: [] for k in players}
    for _ in range(repeats):
        for k, p in players.items():
            t0 = time.perf_counter()
            train_epoch(p, loader, device="cpu")
            epochs[k].append(time.perf_counter() - t0)
    z = torch.randn(sample_n, gan.arch["latent_dim"])
    labels = torch.arange(sample_n) % max(gan.num_classes, 1)

    def generate(net):
        net.eval()

        def call():
            with torch.no_grad():
                return net(z, labels if gan.num_classes else None)
        return call
    latency = timing.compare({k: generate(g) for k, g in generators.items()}, repeats=latency_repeats,
                             min_round_s=min_round_s)
    return {"epoch_s": {k: statistics.median(v) for k, v in epochs.items()},
            "latency_ms": {k: 1e3 * v for k, v in latency.items()}}


def format_rows(name: str, result: dict, latency_label: str = "batch-1 latency") -> list[str]:
    """Table rows: what, medkern, torch, torch/medkern (above 1: medkern faster)."""
    rows = []
    for key, label, unit in (("epoch_s", "training epoch", "s"), ("latency_ms", latency_label, "ms")):
        m, t = result[key]["medkern"], result[key]["torch"]
        rows.append(f"{name:<22} {label:<16} {m:>10.3f} {unit:<2} {t:>10.3f} {unit:<2} {t / m:>8.2f}x")
    return rows


HEADER = f"{'model':<22} {'measure':<16} {'medkern':>13} {'torch':>13} {'torch/medkern':>9}"
