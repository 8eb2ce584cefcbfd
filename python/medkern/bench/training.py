"""``medkern bench --family training``: one training step (forward, cross-entropy, backward, AdamW step) of a whole
network on torch eager, ``torch.compile`` and medkern (``medkern.patch``), from one set of weights.

Before timing, every variant's first step is checked against the same step in float64 torch: the loss and the
parameter gradients (max abs error over the reference's max abs). A float32 step of a deep network with batch
statistics is itself that far from float64 by a few 1e-3, so the bar is relative to torch's own: torch eager in
float32 must be within ``EAGER_TOLERANCE``, and every other variant within ``networks.TOLERANCE`` or
``ERROR_FACTOR`` times eager's error, whichever is larger. A variant that disagrees is reported and left out. The
variants that pass are timed interleaved (``timing.compare``)."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import machine
from .networks import OURS, SEED, TOLERANCE, Mismatch, NetworkCase, _monai_resnet18_3d_28, prepared
from .results import append_csv
from .timing import compare


@dataclass(frozen=True)
class TrainingCase:
    network: NetworkCase
    batch: int
    num_classes: int = 2
    opt_in: bool = False  # too slow for the default run: only when --case names it in full

    @property
    def name(self) -> str:
        return f"{self.network.name}_b{self.batch}"


def _monai_resnet18_3d_64() -> nn.Module:
    return _monai_resnet18_3d_28()  # the same network; the volumes are larger


CASES = [
    TrainingCase(NetworkCase("monai_resnet18_3d_28", _monai_resnet18_3d_28, (1, 28, 28, 28)), 8),
    TrainingCase(NetworkCase("monai_resnet18_3d_64", _monai_resnet18_3d_64, (1, 64, 64, 64)), 2, opt_in=True),
]


def _eager(model):
    return model


def _compile(model):
    return torch.compile(model)


def _patch(model):
    import medkern

    return medkern.patch(model)


VARIANTS = {"eager": _eager, "compile": _compile, OURS: _patch}
EAGER_TOLERANCE = 1e-2
ERROR_FACTOR = 3.0


def _gradients(model: nn.Module, forward, x, y) -> tuple[torch.Tensor, list[torch.Tensor]]:
    loss = nn.functional.cross_entropy(forward(x), y)
    grads = torch.autograd.grad(loss, [p for p in model.parameters()])
    return loss.detach(), grads


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    scale = want.abs().max().item()
    err = (got.detach().double() - want).abs().max().item()
    return err / scale if scale > 0 else err


def step_error(model: nn.Module, forward, x, y, reference) -> float:
    """The worse relative error of the loss and of all the gradients together (a BatchNorm's preceding bias has a
    gradient of zero up to rounding, so the gradients are judged as one vector) against the float64 step."""
    loss, grads = _gradients(model, forward, x, y)
    ref_loss, ref_grads = reference
    flat = torch.cat([g.detach().double().flatten() for g in grads])
    return max(_relative(loss, ref_loss), _relative(flat, torch.cat([r.flatten() for r in ref_grads])))


def check(error: float, tolerance: float) -> float:
    if not error <= tolerance:  # also catches NaN
        raise Mismatch(f"loss or gradients differ from torch float64 by {error:.3g} of their max abs (tolerance "
                       f"{tolerance:.3g}); not timed")
    return error


def measure(case: TrainingCase, *, device: str, repeats: int, min_round_s: float) -> dict[str, dict]:
    torch.compiler.reset()
    model = prepared(case.network).train().to(device)
    g = torch.Generator().manual_seed(SEED + case.batch)
    x = torch.randn(case.batch, *case.network.item_shape, generator=g).to(device)
    y = torch.randint(0, case.num_classes, (case.batch,), generator=g).to(device)
    ref_model = copy.deepcopy(model).double()
    reference = _gradients(ref_model, ref_model, x.double(), y)
    eager_net = copy.deepcopy(model)
    eager_error = step_error(eager_net, eager_net, x, y, reference)
    results, steps = {}, {}
    for name, build in VARIANTS.items():
        result = results[name] = {"status": "ok", "detail": "", "rel_error": float("nan"), "seconds": float("nan")}
        try:
            net = copy.deepcopy(model)
            forward = build(net)
            tolerance = EAGER_TOLERANCE if name == "eager" else max(TOLERANCE, ERROR_FACTOR * eager_error)
            result["rel_error"] = check(step_error(net, forward, x, y, reference), tolerance)
            optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)

            def step(net=net, forward=forward, optimizer=optimizer):
                optimizer.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(forward(x), y).backward()
                optimizer.step()
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
        cases: list[TrainingCase] | None = None, print_fn=print) -> list[dict]:
    cases = CASES if cases is None else cases
    selected = [c for c in cases if (c.name == select) or (not c.opt_in and select in c.name)]
    facts = {"device": device, "device_name": machine.device_name(device), "threads": torch.get_num_threads(),
             "commit": machine.commit(), "torch_version": torch.__version__}
    print_fn(f"# {facts['device_name']}, {facts['threads']} threads, torch {facts['torch_version']}, float32; one "
             f"step = forward, cross-entropy, backward, AdamW; ms per step, median of {repeats} interleaved rounds; "
             f"vs X = X's ms / {OURS}'s ms (>1: {OURS} faster); checked against a float64 step first")
    others = [v for v in VARIANTS if v != OURS]
    print_fn(" ".join([f"{'network':<22} {'batch':>5}", *(f"{v + ' ms':>11}" for v in VARIANTS),
                       *(f"{'vs ' + v:>10}" for v in others)]))
    rows = []
    for case in selected:
        results = measure(case, device=device, repeats=repeats, min_round_s=min_round_s)
        ms = {k: r["seconds"] * 1e3 for k, r in results.items()}
        print_fn(" ".join([f"{case.network.name:<22} {case.batch:>5}",
                           *(f"{ms[v]:>11.1f}" if results[v]["status"] == "ok" else f"{results[v]['status']:>11}"
                             for v in VARIANTS),
                           *(f"{ms[v] / ms[OURS]:>9.2f}x" for v in others)]))
        for name, r in results.items():
            if r["status"] != "ok":
                print_fn(f"    {name} {r['status'].upper()}: {r['detail']}")
            rows.append({"network": case.network.name, "batch": case.batch, "variant": name, "status": r["status"],
                         "ms_per_step": ms[name], "speedup_vs_eager": ms["eager"] / ms[name],
                         "rel_error": r["rel_error"], "detail": r["detail"], **facts})
    if csv_path and rows:
        append_csv(Path(csv_path), CSV_FIELDS, rows, ".6g")
    return rows
