"""``medkern bench --family networks --train`` (alias ``--family training``): one training step of a whole network,
or of a GAN's two networks, on torch eager, ``torch.compile`` (inductor), ``medkern.patch`` and the medkern
compile backend (``torch.compile(model, backend="medkern")``), from one set of weights.

A case is its networks and the phases of its step: a classifier's step is one phase (forward, cross-entropy,
backward, AdamW); a GAN's is the discriminator's phase on real and generated images, then the generator's, each
updating its own network with the other frozen, as the project's GAN loop does (``medkern.train.gan_loop``), with
the project's default hinge loss; left out are its R1 penalty (a double backward, which ``torch.compile`` cannot
trace) and its random augmentations. Dropout is turned off (p = 0) in every network: its random masks differ
between float32 and float64 and between torch's and inductor's generators, so no check could compare a step with
them.

Before timing, every variant's first step is checked against the same step in float64 torch: each phase's loss
and parameter gradients (max abs error over the reference's max abs). A float32 step of a deep network with batch
statistics is itself that far from float64 by a few 1e-3, so the bar is relative to torch's own: torch eager in
float32 must be within ``EAGER_TOLERANCE``, and every other variant within ``networks.TOLERANCE`` or
``ERROR_FACTOR`` times eager's error, whichever is larger. A variant that disagrees, or raises (a compiler that
fails on a training graph), is reported and left out. The variants that pass are timed interleaved
(``timing.compare``)."""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

from . import machine
from .networks import (GAN_LATENT, SEED, TOLERANCE, Mismatch, NetworkCase, _ecg_recurrent, _gan_generator,
                       _image_resnet, _LabelledGenerator, _monai_densenet121, _monai_resnet18_3d_28, _monai_resnet18_28,
                       _monai_resnet18_224, plot, prepared)
from .results import append_csv
from .timing import compare


@dataclass(frozen=True)
class Phase:
    """One optimizer step within a training step: ``loss(forwards, batch)`` (``forwards``: network name -> the
    variant's callable) differentiated for the parameters of the network ``updates`` alone."""
    updates: str
    loss: Callable[[dict, tuple], torch.Tensor]


@dataclass(frozen=True)
class TrainingCase:
    name: str
    networks: dict[str, NetworkCase]
    batch: int
    inputs: Callable[[int, torch.Generator], tuple[torch.Tensor, ...]]  # (batch size, generator) -> the batch
    phases: tuple[Phase, ...]
    opt_in: bool = False  # too slow for the default run: only when --case names it in full

    @property
    def row_name(self) -> str:
        return f"{self.name}_b{self.batch}"


def _cross_entropy(forwards: dict, batch: tuple) -> torch.Tensor:
    x, y = batch
    return nn.functional.cross_entropy(forwards["net"](x), y)


def _labelled_items(item_shape, num_classes: int, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, *item_shape, generator=g), torch.randint(0, num_classes, (n,), generator=g)


def classifier(network: NetworkCase, batch: int, *, num_classes: int = 2, opt_in: bool = False) -> TrainingCase:
    return TrainingCase(network.name, {"net": network}, batch,
                        partial(_labelled_items, network.item_shape, num_classes), (Phase("net", _cross_entropy),),
                        opt_in)


def _discriminator_loss(forwards: dict, batch: tuple) -> torch.Tensor:
    from ..losses import hinge_d_loss  # the project's default GANConfig.loss

    real, z = batch
    with torch.no_grad():
        fake = forwards["generator"](z)
    return hinge_d_loss(forwards["discriminator"](real), forwards["discriminator"](fake))


def _generator_loss(forwards: dict, batch: tuple) -> torch.Tensor:
    from ..losses import hinge_g_loss

    _, z = batch
    return hinge_g_loss(forwards["discriminator"](forwards["generator"](z)))


def _real_and_latent(image_shape, latent_shape, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(n, *image_shape, generator=g) * 2 - 1, torch.randn(n, *latent_shape, generator=g)


def gan(name: str, generator: NetworkCase, discriminator: NetworkCase, batch: int, *,
        opt_in: bool = False) -> TrainingCase:
    """A generator (latent -> image) and a discriminator (image -> score), one-input networks both."""
    return TrainingCase(name, {"generator": generator, "discriminator": discriminator}, batch,
                        partial(_real_and_latent, discriminator.item_shape, generator.item_shape),
                        (Phase("discriminator", _discriminator_loss), Phase("generator", _generator_loss)), opt_in)


MONAI_LATENT = 64


def _monai_generator() -> nn.Module:
    from monai.networks.nets import Generator

    # 7x7 maps doubled twice: 28x28 images (MedMNIST's size).
    return Generator(latent_shape=(MONAI_LATENT,), start_shape=(64, 7, 7), channels=(32, 16, 1), strides=(2, 2, 1))


def _monai_discriminator() -> nn.Module:
    from monai.networks.nets import Discriminator

    # MONAI's GAN tutorial's channels; a raw score (no sigmoid) for the hinge loss.
    return Discriminator(in_shape=(1, 28, 28), channels=(8, 16, 32, 64, 1), strides=(2, 2, 2, 2, 1), last_act=None)


def _gan_discriminator() -> nn.Module:
    from ..models.gan import ImageGAN
    from ..models.gan_networks import Discriminator

    # ImageGAN's projection discriminator, judging each image under the class _gan_generator drew it for.
    return _LabelledGenerator(Discriminator(1, (28, 28), num_classes=2, conditioning=ImageGAN.ARCH["conditioning"],
                                            width=ImageGAN.ARCH["width"]), 2)


def _monai_resnet18_3d_64() -> nn.Module:
    return _monai_resnet18_3d_28()  # the same network; the volumes are larger


# A full run of the default cases is some 10 minutes on 2 busy cores; MONAI's ResNets and DenseNet take 7 to 14 s a
# torch eager step there (some 45 steps a case over the variants, beside compiling), so they are opt-in.
CASES = [
    classifier(NetworkCase("monai_resnet18_28", _monai_resnet18_28, (1, 28, 28)), 128, opt_in=True),
    # MONAI's ResNet-18 with its ImageNet stem (_monai_resnet18_224's network) on 64x64 images
    classifier(NetworkCase("monai_resnet18_64", _monai_resnet18_224, (3, 64, 64)), 32, opt_in=True),
    classifier(NetworkCase("monai_densenet121_64", _monai_densenet121, (3, 64, 64)), 16, opt_in=True),
    gan("monai_gan_28", NetworkCase("generator", _monai_generator, (MONAI_LATENT,)),
        NetworkCase("discriminator", _monai_discriminator, (1, 28, 28)), 64),
    classifier(NetworkCase("image_resnet", _image_resnet, (1, 28, 28)), 32),
    classifier(NetworkCase("ecg_conv_gru", _ecg_recurrent, (1, 187)), 64),
    gan("image_gan", NetworkCase("generator", _gan_generator, (GAN_LATENT,)),
        NetworkCase("discriminator", _gan_discriminator, (1, 28, 28)), 64),
    classifier(NetworkCase("monai_resnet18_3d_28", _monai_resnet18_3d_28, (1, 28, 28, 28)), 8, opt_in=True),
    classifier(NetworkCase("monai_resnet18_3d_64", _monai_resnet18_3d_64, (1, 64, 64, 64)), 2, opt_in=True),
]


def _eager(model):
    return model


def _compile(model):
    return torch.compile(model)


def _patch(model):
    import medkern

    return medkern.patch(model)


def _backend(model):
    return torch.compile(model, backend="medkern")


VARIANTS = {"eager": _eager, "compile": _compile, "patch": _patch, "medkern": _backend}
EAGER_TOLERANCE = 1e-2
ERROR_FACTOR = 3.0


def _trainable(model: nn.Module) -> nn.Module:
    model.train()
    for m in model.modules():
        if isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
            m.p = 0.0
    return model


def _only(models: dict[str, nn.Module], name: str) -> None:
    """Freezes every network but ``name``, so that a phase computes (and a compiled graph holds) the gradients
    of its own network's parameters only."""
    for k, m in models.items():
        m.requires_grad_(k == name)


def _gradients(case: TrainingCase, models: dict, forwards: dict, batch: tuple) -> list:
    """``[(loss, parameter gradients)]``, one per phase, all from the same weights (no optimizer step between)."""
    out = []
    for phase in case.phases:
        _only(models, phase.updates)
        loss = phase.loss(forwards, batch)
        out.append((loss.detach(), torch.autograd.grad(loss, list(models[phase.updates].parameters()))))
    return out


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    scale = want.abs().max().item()
    err = (got.detach().double() - want).abs().max().item()
    return err / scale if scale > 0 else err


def step_error(case: TrainingCase, models: dict, forwards: dict, batch: tuple, reference: list) -> float:
    """The worst relative error, over the phases, of the loss and of the phase's gradients together (a
    BatchNorm's preceding bias has a gradient of zero up to rounding, so the gradients are judged as one vector)
    against the float64 step."""
    errors = []
    for (loss, grads), (ref_loss, ref_grads) in zip(_gradients(case, models, forwards, batch), reference):
        flat = torch.cat([g.detach().double().flatten() for g in grads])
        errors += [_relative(loss, ref_loss), _relative(flat, torch.cat([r.flatten() for r in ref_grads]))]
    return max(errors)


def check(error: float, tolerance: float) -> float:
    if not error <= tolerance:  # also catches NaN
        raise Mismatch(f"loss or gradients differ from torch float64 by {error:.3g} of their max abs (tolerance "
                       f"{tolerance:.3g}); not timed")
    return error


def _step(case: TrainingCase, models: dict, forwards: dict, optimizers: dict, batch: tuple) -> None:
    for phase in case.phases:
        _only(models, phase.updates)
        optimizer = optimizers[phase.updates]
        optimizer.zero_grad(set_to_none=True)
        phase.loss(forwards, batch).backward()
        optimizer.step()


def measure(case: TrainingCase, variants: dict, *, device: str, repeats: int, min_round_s: float) -> dict[str, dict]:
    """``{variant: {"status", "detail", "rel_error", "seconds"}}``, as ``networks.measure``'s: each variant built
    (``build(network)`` -> its callable) on its own deep copy of the case's networks, checked, and timed if it
    passes."""
    torch.compiler.reset()
    models = {k: _trainable(prepared(net)).to(device) for k, net in case.networks.items()}
    batch = tuple(t.to(device) for t in case.inputs(case.batch, torch.Generator().manual_seed(SEED + case.batch)))
    ref_models = {k: copy.deepcopy(m).double() for k, m in models.items()}
    reference = _gradients(case, ref_models, ref_models, tuple(t.double() if t.is_floating_point() else t
                                                               for t in batch))
    eager_models = copy.deepcopy(models)
    eager_error = step_error(case, eager_models, eager_models, batch, reference)
    results, steps = {}, {}
    for name, build in variants.items():
        result = results[name] = {"status": "ok", "detail": "", "rel_error": float("nan"), "seconds": float("nan")}
        try:
            nets = copy.deepcopy(models)
            forwards = {k: build(m) for k, m in nets.items()}
            tolerance = EAGER_TOLERANCE if name == "eager" else max(TOLERANCE, ERROR_FACTOR * eager_error)
            result["rel_error"] = check(step_error(case, nets, forwards, batch, reference), tolerance)
            optimizers = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in nets.items()}
            step = partial(_step, case, nets, forwards, optimizers, batch)
            step()  # here, so that a variant failing on a full step (its optimizer, a recompile) is reported
            steps[name] = step
        except Mismatch as e:
            result.update(status="mismatch", detail=str(e))
        except Exception as e:
            result.update(status="error", detail=f"{type(e).__name__}: {e}")
    for name, seconds in compare(steps, device=device, repeats=repeats, min_round_s=min_round_s).items():
        results[name]["seconds"] = seconds
    return results


CSV_FIELDS = ["network", "batch", "variant", "status", "ms_per_step", "speedup_vs_eager", "rel_error", "detail",
              "device", "device_name", "threads", "commit", "torch_version"]


def run(*, device: str = "cpu", select: str = "", repeats: int = 5, min_round_s: float = 0.05, csv_path=None,
        cases: list[TrainingCase] | None = None, variants: dict | None = None, print_fn=print) -> list[dict]:
    """Measures each selected case on each variant, prints a table, and appends one CSV row per case and variant
    to ``csv_path`` (with a bar chart of this run's speed-ups over eager beside it, ``<csv stem>.png``). ``cases``
    and ``variants`` default to ``CASES`` and ``VARIANTS``. Returns the CSV rows."""
    cases = CASES if cases is None else cases
    variants = VARIANTS if variants is None else variants
    selected = [c for c in cases if c.row_name == select or (not c.opt_in and select in c.row_name)]
    facts = {"device": device, "device_name": machine.device_name(device), "threads": torch.get_num_threads(),
             "commit": machine.commit(), "torch_version": torch.__version__}
    print_fn(f"# {facts['device_name']}, {facts['threads']} threads, torch {facts['torch_version']}, float32; one "
             f"step = forward, loss, backward, AdamW (a GAN's: the discriminator's, then the generator's); medkern = "
             f"torch.compile(backend='medkern'); ms per step, median of {repeats} interleaved rounds; x eager = "
             f"eager's ms / the variant's ms (>1: faster than torch eager); checked against a float64 step first")
    for case in cases:
        if case.opt_in and select in case.row_name and case not in selected:
            print_fn(f"# {case.row_name} left out (slow): run it with --case {case.row_name}")
    others = [v for v in variants if v != "eager"]
    print_fn(" ".join([f"{'network':<22} {'batch':>5}", *(f"{v + ' ms':>11}" for v in variants),
                       *(f"{v + ' x eager':>17}" for v in others)]))
    rows = []
    for case in selected:
        results = measure(case, variants, device=device, repeats=repeats, min_round_s=min_round_s)
        ms = {k: r["seconds"] * 1e3 for k, r in results.items()}
        eager_ms = ms.get("eager", float("nan"))
        print_fn(" ".join([f"{case.name:<22} {case.batch:>5}",
                           *(f"{ms[v]:>11.1f}" if results[v]["status"] == "ok" else f"{results[v]['status']:>11}"
                             for v in variants),
                           *(f"{eager_ms / ms[v]:>16.2f}x" for v in others)]))
        for name, r in results.items():
            if r["status"] != "ok":
                print_fn(f"    {name} {r['status'].upper()}: {r['detail']}")
            rows.append({"network": case.name, "batch": case.batch, "variant": name, "status": r["status"],
                         "ms_per_step": ms[name], "speedup_vs_eager": eager_ms / ms[name],
                         "rel_error": r["rel_error"], "detail": r["detail"], **facts})
    if csv_path and rows:
        path = Path(csv_path)
        append_csv(path, CSV_FIELDS, rows, ".6g")
        chart = path.with_suffix(".png")
        if plot(rows, chart, f"training step, {facts['device_name']}, {facts['threads']} threads, commit "
                             f"{facts['commit']}"):
            print_fn(f"speed-ups over torch eager plotted in {chart}")
    return rows
