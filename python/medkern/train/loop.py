"""The one training loop behind every ``medkern.models`` model and the ``medkern train`` command."""
from __future__ import annotations

import copy
import math
import multiprocessing
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, WeightedRandomSampler

from . import checkpoint
from .config import TrainConfig
from .distributed import Context, context
from .progress import Batches

CHECKPOINT = "checkpoint.pt"
SHOWN = ("train_loss", "seconds", "val_loss", "val_auroc", "val_accuracy", "val_balanced_accuracy", "val_mae")


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_score: float | None = None
    stopped_early: bool = False


def worker_context():
    """Workers started by fork would hang in OpenMP once the parent has run an OpenMP region."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def make_loader(ds, batch_size: int, *, shuffle: bool, seed: int = 0, ctx: Context | None = None,
                weighted: bool = False, num_workers: int = 0, drop_last: bool = False) -> DataLoader:
    """``batch_size`` per process. Shuffling goes through a DistributedSampler even in one process, so
    that N processes with batch b see, batch for batch, the same items as one process with batch N b."""
    rank, world = (ctx.rank, ctx.world) if ctx is not None else (0, 1)
    if weighted:
        if world > 1:
            raise ValueError("sampler='weighted' is not supported under torchrun; use class_weight='balanced'")
        counts = torch.bincount(ds.y)
        weights = (1.0 / counts.clamp(min=1).double())[ds.y]
        sampler = WeightedRandomSampler(weights, len(ds), replacement=True,
                                        generator=torch.Generator().manual_seed(seed))
    elif shuffle or world > 1:
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed)
    else:
        sampler = None
    extra = {"multiprocessing_context": worker_context(), "persistent_workers": True} if num_workers else {}
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=drop_last,
                      **extra)


def lr_lambda(config: TrainConfig, steps_per_epoch: int):
    total = config.epochs * steps_per_epoch
    warmup = int(round(config.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def train_one_epoch(model, loader, objective, optimizer, scheduler=None, *, clip_grad=None, device="cpu",
                    progress=None, average=None) -> float:
    """One pass over ``loader``; the mean training loss. ``progress``: the bar's title (a bar on a terminal) or None;
    ``average``: an ``AveragedModel`` updated after each step."""
    model.train()
    total, count = 0.0, 0
    batches = Batches(loader, progress)
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss = objective.loss(model(x), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()}: lower lr or enable clip_grad")
        loss.backward()
        if clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        optimizer.step()
        if average is not None:
            average.update_parameters(getattr(model, "module", model))
        if scheduler is not None:
            scheduler.step()
        total += loss.item() * len(y)
        count += len(y)
        batches.show(loss=f"{total / count:.4f}")
    return total / max(count, 1)


@torch.no_grad()
def predict_outputs(network, ds_or_x, objective, *, batch_size=256, device="cpu") -> np.ndarray:
    """The objective's outputs (probabilities or forecasts) for a dataset or a tensor of inputs."""
    network.eval()
    xs = ds_or_x.x if hasattr(ds_or_x, "x") else ds_or_x
    out = [objective.outputs(network(xs[i:i + batch_size].to(device))).cpu() for i in range(0, len(xs), batch_size)]
    return torch.cat(out).numpy()


def validate(network, ds, objective, *, batch_size=256, device="cpu") -> dict:
    """Validation loss and metrics, computed on the plain module so each process evaluates alone."""
    network.eval()
    with torch.no_grad():
        losses, outs = [], []
        for i in range(0, len(ds), batch_size):
            x, y = ds.x[i:i + batch_size].to(device), ds.y[i:i + batch_size].to(device)
            raw = network(x)
            losses.append(objective.loss(raw, y).item() * len(y))
            outs.append(objective.outputs(raw).cpu())
    result = {"loss": sum(losses) / len(ds)}
    result.update(objective.metrics(ds.y.numpy(), torch.cat(outs).numpy()))
    return result


def _improved(score, best, higher: bool) -> bool:
    if score is None or math.isnan(score):
        return False
    return best is None or (score > best if higher else score < best)


def fit(network: torch.nn.Module, train, val, objective, config: TrainConfig, *, augment=None, out_dir=None,
        resume: bool = False, log=print) -> FitResult:
    """Trains ``network`` in place and leaves it holding the best weights on ``val`` (the last ones without
    ``val``); epoch summaries go to ``log`` (None: silent), progress bars appear with ``config.progress``.
    With ``out_dir``, ``checkpoint.pt`` there is rewritten atomically after every epoch and ``resume=True``
    continues from it, reproducing the uninterrupted run (without DataLoader workers)."""
    ctx = context(config.device)
    if config.batch_size % ctx.world:
        raise ValueError(f"batch_size {config.batch_size} must be divisible by the {ctx.world} processes")
    per_rank = config.batch_size // ctx.world
    bars = config.progress and ctx.is_main  # tqdm bars; the per-epoch lines go to ``log`` regardless
    say = log if ctx.is_main and log is not None else (lambda s: None)
    torch.manual_seed(config.seed)
    network.to(ctx.device)
    model = network
    if ctx.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            network, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    train_ds = train.with_transform(augment) if (augment is not None and config.augment) else train
    loader = make_loader(train_ds, per_rank, shuffle=True, seed=config.seed, ctx=ctx,
                         weighted=config.sampler == "weighted", num_workers=config.num_workers,
                         drop_last=len(train) // ctx.world > per_rank)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config, len(loader)))
    average = None
    if config.ema is not None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
        average = AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True)
    evaluated = network if average is None else average.module  # the weights validated and kept
    result = FitResult()
    best_state, bad_epochs, start = None, 0, 0
    ckpt_path = Path(out_dir) / CHECKPOINT if out_dir is not None else None
    if resume and ckpt_path is not None and ckpt_path.is_file():
        state = checkpoint.load(ckpt_path, map_location=ctx.device)
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if average is not None:
            average.load_state_dict(state["average"])
        torch.set_rng_state(state["rng"])
        best_state, bad_epochs, start = state["best_state"], state["bad_epochs"], state["epoch"]
        result.history, result.best_epoch = state["history"], state["best_epoch"]
        result.best_score = state["best_score"]
        say(f"resumed from {ckpt_path} after epoch {start}")
    elif resume:
        say(f"no checkpoint at {ckpt_path}: starting afresh")
    for epoch in range(start, config.epochs):
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        elif isinstance(loader.sampler, WeightedRandomSampler):
            loader.sampler.generator.manual_seed(config.seed + epoch)
        t0 = time.perf_counter()
        train_loss = train_one_epoch(model, loader, objective, optimizer, scheduler, clip_grad=config.clip_grad,
                                     device=ctx.device, average=average,
                                     progress=f"epoch {epoch + 1}/{config.epochs}" if bars else None)
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": train_loss,
               "seconds": time.perf_counter() - t0}
        if val is not None:
            scores = validate(evaluated, val, objective, device=ctx.device)
            row.update({f"val_{k}": v for k, v in scores.items()})
            score = scores.get(config.monitor)
            if score is None:
                raise ValueError(f"monitor={config.monitor!r} is not a validation metric; choose from {sorted(scores)}")
            if _improved(score, result.best_score, config.higher_is_better):
                result.best_score, result.best_epoch, bad_epochs = score, epoch + 1, 0
                best_state = copy.deepcopy(evaluated.state_dict())
            else:
                bad_epochs += 1
        result.history.append(row)
        shown = " ".join(f"{k}={v:.4g}" for k, v in row.items() if k in SHOWN)
        say(f"epoch {epoch + 1}/{config.epochs} {shown}")
        stop = val is not None and config.patience is not None and bad_epochs >= config.patience
        if ckpt_path is not None and ctx.is_main:
            checkpoint.save_atomic({"epoch": epoch + 1, "model": network.state_dict(),
                                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                    "rng": torch.get_rng_state(), "best_state": best_state, "bad_epochs": bad_epochs,
                                    "history": result.history, "best_epoch": result.best_epoch,
                                    "best_score": result.best_score,
                                    "average": None if average is None else average.state_dict()}, ckpt_path)
        if stop:
            result.stopped_early = True
            say(f"early stop: no {config.monitor} improvement in {config.patience} epochs; "
                f"best {result.best_score:.4g} at epoch {result.best_epoch}")
            break
    if best_state is not None:
        network.load_state_dict(best_state)
    elif average is not None:
        network.load_state_dict(average.module.state_dict())
    network.eval()
    return result
