"""Training under a time budget: the program, not the user, chooses the recipe, on held-out data only
(``medkern.train.folds``: the validation split, or cross-validation when that split is small), in the time
the user grants. The choices, in the order the budget buys them:

1. epochs, planned from the wall time of a probe epoch so that the first ensemble member takes at most
   ``PLAN_SHARE`` of the budget (early stopping on the held-out data still picks the best epoch);
2. the network's width: the model's defaults and narrower (``SCALES``), while they fit in the budget;
3. ensemble members at the chosen width, each from new seeds (and, under cross-validation, new folds), added
   while they improve the ensemble's held-out AUROC (held-out log-loss breaks ties; one better alone replaces
   the ensemble) and fit in the budget (a member whose next network would end past it, at the pace measured
   so far, is abandoned);
4. test-time flip averaging, where the network supports it and it helps on the held-out data;
5. the temperature and, for binary tasks, the decision threshold, fitted on the held-out predictions.

Under cross-validation a member is one network per fold, each predicting only its held-out fold, and the
final model averages all of them. Nothing here reads a data set's name.

Wall-clock measurements make the choices depend on the machine's speed and load; everything else is seeded.
The record (``metrics.json["recipe"]``) lists each member's width, seeds and epochs, the held-out numbers of
every candidate and why each choice fell as it did, and ``replay`` trains the recorded recipe again without
timing anything, to the same weights."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .. import metrics
from . import folds as folding
from .calibration import fit_temperature
from .config import TrainConfig

# The first member may take at most this share of the budget left after the probe: the model's own epochs
# wherever they fit, as a shortened schedule loses more than later members win back (VesselMNIST3D at 0.5:
# 26 of 40 epochs, no room for a second member, test AUROC 0.918 against 0.951 with the 40).
PLAN_SHARE = 0.85
REPORT_SHARE = 0.1    # kept for the report (test metrics, bootstrap, plots) after the choices
SAFETY = 1.25         # members are planned for this much slower than the last one went
SCALES = (1.0, 0.5)   # width candidates, relative to the model's defaults
WIDTH_KEYS = ("width", "hidden", "conv_channels")  # what "width" scales in each model's architecture
MAX_MEMBERS = 8
DEFAULT_BUDGET = {"image": 300.0, "sequence": 300.0, "volume": 600.0}  # seconds on two CPU cores, by data kind


def default_budget(kind: str) -> float:
    """The budget ``medkern train`` uses unless told: sized for 28-pixel images, short signals and 28^3 volumes
    of a few hundred to a few thousand items on two cores."""
    return DEFAULT_BUDGET[kind]


@dataclass
class Member:
    """One ensemble member: a fitted model per part of the held-out plan, and its held-out probabilities."""

    spec: dict                    # what ``replay`` needs: scale, seed, epochs
    models: list
    probs: np.ndarray             # (N held out, K), temperature 1, no test-time augmentation
    seconds: float
    score: dict = field(default_factory=dict)

    @property
    def networks(self) -> list:
        return [m.network for m in self.models]


def _scaled(arch: dict, scale: float) -> dict:
    return {k: max(1, int(round(v * scale))) if k in WIDTH_KEYS and v else v for k, v in arch.items()}


def _score(y: np.ndarray, probs: np.ndarray) -> dict:
    """Held-out AUROC (binary, or macro one-vs-rest), log-loss and argmax accuracy."""
    p = np.clip(probs, 1e-12, 1.0)
    auroc = metrics.classification_metrics(y, p[:, 1] if p.shape[1] == 2 else p)["auroc"]
    return {"auroc": auroc, "nll": float(-np.mean(np.log(p[np.arange(len(y)), y]))),
            "accuracy_argmax": float(np.mean(p.argmax(axis=1) == y))}


def _key(score: dict) -> tuple:
    """Higher is better: AUROC (undefined counts as worst), then lower log-loss."""
    return (-math.inf if score["auroc"] is None or math.isnan(score["auroc"]) else score["auroc"], -score["nll"])


def _better(a: dict, b: dict) -> bool:
    return _key(a) > _key(b)


def _set_flips(member_models, on: bool) -> None:
    for m in member_models:
        m.network.flip_average = on


class _Trainer:
    """Trains members on a held-out plan with the caller's model factory and training options."""

    def __init__(self, make, validation: folding.Validation, base_arch: dict, options: dict, class_names, log):
        self.make, self.validation, self.base_arch = make, validation, base_arch
        self.options, self.class_names, self.log = options, list(class_names), log

    def member(self, spec: dict, deadline: float | None = None) -> Member | None:
        """The member ``spec`` describes; None, abandoned, when the next of its networks would end past
        ``deadline`` at the pace of those before it (load on the machine changes while it trains)."""
        t0 = time.perf_counter()
        y = self.validation.y
        probs, models = None, []
        for j, (fit, held, index) in enumerate(self.validation.parts(spec["seed"])):
            if deadline is not None and j and time.perf_counter() + (time.perf_counter() - t0) / j > deadline:
                if self.log is not None:
                    self.log(f"recipe: member seed {spec['seed']} abandoned after {j} network(s): budget")
                return None
            model = self.make(seed=spec["seed"] + j, **_scaled(self.base_arch, spec["scale"]))
            model.class_names = self.class_names
            model.fit(fit, held, log=None, **{**self.options, "epochs": spec["epochs"], "calibrate": False,
                                              "threshold": None})
            if hasattr(model.network, "flip_average"):
                model.network.flip_average = False
            p = model.predict(held.x)
            probs = np.zeros((len(y), p.shape[1])) if probs is None else probs
            probs[index] = p
            models.append(model)
        member = Member(spec, models, probs, time.perf_counter() - t0)
        member.score = _score(y, probs)
        if self.log is not None:
            self.log(f"recipe: member width x{spec['scale']:g}, seed {spec['seed']}, up to {spec['epochs']} epochs "
                     f"({len(models)} network(s)): held-out AUROC {member.score['auroc']:.4f}, log-loss "
                     f"{member.score['nll']:.4f}, {member.seconds:.0f} s")
        return member

    def tta_probs(self, members: list[Member]) -> np.ndarray:
        """The ensemble's held-out probabilities with every network averaging over its mirror images."""
        out = []
        for member in members:
            _set_flips(member.models, True)
            probs = np.zeros_like(member.probs)
            for model, (_, held, index) in zip(member.models, self.validation.parts(member.spec["seed"])):
                probs[index] = model.predict(held.x)
            _set_flips(member.models, False)
            out.append(probs)
        return np.mean(out, axis=0)


def _ensemble(members: list[Member]) -> np.ndarray:
    return np.mean([m.probs for m in members], axis=0)


def search(make, train, val, *, budget: float, options: dict | None = None, arch: dict | None = None,
           class_names=(), seed: int = 0, started: float | None = None, log=print):
    """Chooses and trains a classifier's recipe within ``budget`` seconds of wall time counted from ``started``
    (``time.perf_counter()``; default now), on held-out data only. ``make(seed=..., **arch)`` builds the
    untrained model; ``arch`` holds what the user fixed (a fixed width key means no width search);
    ``options`` are ``TrainConfig`` fields, ``epochs`` among them the most the plan may give. Returns the
    fitted model and the record of the choices (``metrics.json["recipe"]``)."""
    started = time.perf_counter() if started is None else started
    deadline = started + budget * (1.0 - REPORT_SHARE)
    options, arch = dict(options or {}), dict(arch or {})
    probe = make(seed=seed, **arch)
    config = TrainConfig.with_defaults({**probe.TRAIN, "seed": seed}, options)
    validation = folding.plan(train, val)
    trainer = _Trainer(make, validation, probe.arch, options, class_names, log)
    say = log if log is not None else (lambda s: None)
    say(f"recipe: {budget:.0f} s budget; choices judged on {validation.reason}")

    # 1. Epochs, from the wall time of an epoch of the first part at the default width: the second of two, as the
    # first in a process also pays one-off costs (layer plans, allocations) that took 2-3x an epoch on two cores.
    fit, held, _ = validation.parts(seed)[0]
    timed = make(seed=seed, **arch)
    timed.class_names = list(class_names)  # classes a part may lack (a rare one) still get an output
    timed.fit(fit, held, log=None, **{**options, "epochs": 2, "calibrate": False, "threshold": None})
    # The training pass, and the validation pass (a forward pass: about a third of a training step per item).
    epoch_s = timed.result.history[-1]["seconds"] * (1 + len(held) / (3 * len(fit)))
    n_parts = len(validation.parts(seed))
    left = deadline - time.perf_counter()
    epochs = int(min(config.epochs, max(1, PLAN_SHARE * left // (n_parts * epoch_s))))
    say(f"recipe: one epoch takes {epoch_s:.1f} s; {n_parts} network(s) per member; up to {epochs} epochs "
        f"(of {config.epochs}) so that a member takes at most {PLAN_SHARE:.0%} of the {left:.0f} s left")

    # 2. Width: each candidate is a full member; the first is trained whatever the budget.
    scales = (1.0,) if any(k in arch for k in WIDTH_KEYS) else SCALES
    candidates, width_rows, next_seed = [], [], seed
    for scale in scales:
        fits = not candidates or time.perf_counter() + candidates[0].seconds <= deadline  # narrower: no slower
        member = trainer.member({"scale": scale, "seed": next_seed, "epochs": epochs},
                                deadline=deadline if candidates else None) if fits else None
        next_seed += n_parts
        if member is None:
            width_rows.append({"scale": scale, "arch": _scaled(probe.arch, scale), "skipped": "budget"})
            continue
        candidates.append(member)
        width_rows.append({"scale": scale, "arch": _scaled(probe.arch, scale), **member.score,
                           "seconds": member.seconds})
    chosen = max(candidates, key=lambda m: _key(m.score))  # ties: the first, the model's own width
    members = [chosen]

    # 3. Members at the chosen width, for 1.5 times the epochs the chosen member's networks needed at most (the
    # model's default epochs if they were still improving when a budget-shortened plan ended), or fewer where
    # the time left at the speed last measured allows fewer (the machine's load changes while it trains), but
    # not fewer than the first member had.
    best = max(m.result.best_epoch or epochs for m in chosen.models)
    wanted = config.epochs if epochs < config.epochs and best >= 0.8 * epochs else min(epochs, math.ceil(1.5 * best))
    member_rows, score, stop, latest = [], chosen.score, f"at most {MAX_MEMBERS} members", chosen
    while len(members) < MAX_MEMBERS:
        per_epoch = latest.seconds / sum(len(m.result.history) for m in latest.models)
        member_epochs = int(min(wanted, (deadline - time.perf_counter()) // (n_parts * per_epoch * SAFETY)))
        if member_epochs < min(wanted, epochs):  # a member weaker by construction than the first
            stop = "budget"
            break
        member = trainer.member({"scale": chosen.spec["scale"], "seed": next_seed, "epochs": member_epochs},
                                deadline=deadline)
        next_seed += n_parts
        if member is None:
            stop = "budget"
            break
        latest = member
        trial = _score(validation.y, _ensemble([*members, member]))
        # A member better alone than with the rest (they had fewer epochs, on a slower moment) replaces them.
        alone = _better(member.score, trial) and _better(member.score, score)
        decision = "replaces the ensemble" if alone else "kept" if _better(trial, score) else "dropped"
        member_rows.append({"seed": member.spec["seed"], "epochs": member_epochs, "alone": member.score,
                            "ensemble": trial, "decision": decision, "seconds": member.seconds})
        if decision == "dropped":
            stop = "no held-out improvement"
            break
        members, score = ([member], member.score) if alone else ([*members, member], trial)
    say(f"recipe: {len(members)} member(s), held-out AUROC {score['auroc']:.4f}; stopped adding: {stop}")

    # 4. Test-time flip averaging where the network has it, trained with flips, and helps on held-out data.
    tta = None
    if hasattr(chosen.models[0].network, "flip_average") and config.augment:
        with_flips = _score(validation.y, trainer.tta_probs(members))
        tta = {"off": score, "on": with_flips, "chosen": _better(with_flips, score)}
    record = {"budget_s": budget, "validation": validation.describe(), "probe_epoch_s": epoch_s,
              "epochs": epochs, "member_epochs": wanted,
              "width": {"chosen": chosen.spec["scale"], "candidates": width_rows},
              "members": {"first": chosen.score, "added": member_rows, "stopped": stop},
              "tta": tta, "search_s": time.perf_counter() - started,
              "machine_dependent": "epochs and which candidates and members fitted depend on this machine's speed "
                                   "and load; replay the 'units' (medkern train ... --recipe metrics.json) to "
                                   "train the same model again"}
    model, heldout = _finish(trainer, members, bool(tta and tta["chosen"]), config, seed)
    record.update(_summary(model, members))
    return model, {**record, "heldout": heldout}


def replay(make, train, val, recipe: dict, *, options: dict | None = None, class_names=(), seed: int = 0, log=print):
    """Trains the recipe recorded by ``search`` (its ``units``, held-out plan and test-time averaging) again,
    timing nothing: the same data, options and recipe give the same weights."""
    options = dict(options or {})
    units = recipe.get("units")
    if not units or "validation" not in recipe:
        raise ValueError("the recipe must be a recorded one: metrics.json['recipe'] with 'units' and 'validation'")
    arch = dict(recipe["arch"])
    arch.pop("flip_average", None)
    probe = make(seed=seed, **arch)
    config = TrainConfig.with_defaults({**probe.TRAIN, "seed": seed}, options)
    v = recipe["validation"]
    validation = folding.plan(train, val, mode=v["mode"], folds=v["folds"])
    trainer = _Trainer(make, validation, probe.arch, options, class_names, log)
    # the recorded arch is already scaled: train it at scale 1
    members = [trainer.member({**unit, "scale": 1.0}) for unit in units]
    tta = bool(recipe.get("arch", {}).get("flip_average", False)) and hasattr(members[0].models[0].network,
                                                                              "flip_average")
    model, heldout = _finish(trainer, members, tta, config, seed)
    return model, {"replayed": True, "validation": validation.describe(), **_summary(model, members),
                   "tta": recipe.get("tta"), "heldout": heldout}


def _summary(model, members: list[Member]) -> dict:
    return {"arch": dict(model.arch), "units": [{k: m.spec[k] for k in ("seed", "epochs")} for m in members],
            "networks": sum(len(m.models) for m in members), "temperature": model.temperature,
            "threshold": model.threshold}


def _finish(trainer: _Trainer, members: list[Member], tta: bool, config: TrainConfig, seed: int):
    """The final model: every member's networks averaged, flips as chosen, temperature and threshold fitted on
    the held-out predictions; and the held-out report."""
    from ..models import networks

    y = trainer.validation.y
    probs = trainer.tta_probs(members) if tta else _ensemble(members)
    logits = np.log(np.clip(probs, 1e-12, 1.0))
    first = members[0].models[0]
    nets = [net for m in members for net in m.networks]
    arch = dict(first.arch)
    if "flip_average" in arch:
        arch["flip_average"] = tta
    model = trainer.make(seed=seed, ensemble=len(nets), **arch)
    model.class_names, model.shape = list(trainer.class_names), dict(first.shape)
    for net in nets:
        if hasattr(net, "flip_average"):
            net.flip_average = tta
    model.network = nets[0] if len(nets) == 1 else networks.Ensemble(nets, "probabilities")
    model.network.eval()
    model.member_results = [m.result for member in members for m in member.models]
    model.result = model.member_results[0]
    model.train_config = {**first.train_config, "epochs": members[0].spec["epochs"], "calibrate": config.calibrate,
                          "threshold": config.threshold, "target_sensitivity": config.target_sensitivity}
    model.temperature, model.threshold = 1.0, None
    if config.calibrate:
        model.temperature = fit_temperature(logits, y)
    if model.binary and config.threshold is not None and len(np.unique(y)) == 2:
        p = model._probabilities(logits, model.temperature)[:, 1]
        model.threshold = metrics.choose_threshold(y, p, config.threshold, config.target_sensitivity)
    return model, model.metrics_of(logits, y)
