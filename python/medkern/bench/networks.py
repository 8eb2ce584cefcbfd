"""``medkern bench --family networks``: whole-network inference, batch-1 latency and batch-32 throughput, of one
set of weights on torch eager, ``torch.compile``, ONNX Runtime, ``medkern.patch`` and ``medkern.optimize``.

Every variant's output is checked against the network run by torch in float64 before it is timed, and a
variant that disagrees is reported and left out: a fast wrong answer is no result. The variants that pass are
then timed interleaved (``timing.compare``, median of rounds), so a shared machine's load falls on all alike."""
from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from torch import nn

import medkern

from .. import _native
from . import machine
from .results import append_csv
from .timing import compare

SEED = 0
BATCHES = (1, 32)
TOLERANCE = 1e-3  # max abs error over max abs of the float64 reference
OURS = "medkern"  # the variant the speed-up columns are taken for


class Skip(Exception):
    """A variant this machine cannot run (a package missing, an export that fails): reported, not counted as a
    failure."""


class Mismatch(AssertionError):
    """A variant whose output disagrees with torch's float64 result."""


@dataclass(frozen=True)
class NetworkCase:
    name: str
    build: Callable[[], nn.Module]
    item_shape: tuple[int, ...]  # one input item, without the batch dimension
    opt_in_batches: tuple[int, ...] = ()  # too slow for the default run: only when --case names the row in full

    def row_name(self, batch: int) -> str:
        return f"{self.name}_b{batch}"


def _image_resnet() -> nn.Module:
    from ..models.image import ImageClassifier
    from ..models.networks import ResNet

    # What ImageClassifier() builds for 28x28 one-channel images of two classes (width 32; the demo's is 16).
    return ResNet(1, 2, input_size=28, **ImageClassifier.ARCH)


def _ecg_recurrent() -> nn.Module:
    from ..models.networks import RecurrentNet
    from ..models.sequence import SequenceClassifier

    net = RecurrentNet(1, 2, **SequenceClassifier.ARCH)
    # Training sets these from the data; zeros and ones would make the standardisation a no-op.
    net.mean.normal_()
    net.std.uniform_(0.5, 2.0)
    return net


class _LabelledGenerator(nn.Module):
    """The class-conditional generator as a one-input network: the labels cycle through the classes, a function
    of the batch size only, so that every runtime (an ONNX graph included) gets the same single input."""

    def __init__(self, generator: nn.Module, num_classes: int):
        super().__init__()
        self.generator, self.num_classes = generator, num_classes

    def forward(self, z):
        return self.generator(z, torch.arange(z.shape[0], device=z.device) % self.num_classes)


GAN_LATENT = 64  # ImageGAN's default latent_dim, fixed here because it is the input's shape


def _gan_generator() -> nn.Module:
    from ..models.gan import ImageGAN
    from ..models.gan_networks import Generator

    return _LabelledGenerator(Generator(1, (28, 28), num_classes=2, latent_dim=GAN_LATENT,
                                        width=ImageGAN.ARCH["width"]), 2)


def _monai_resnet18_28() -> nn.Module:
    from monai.networks.nets import resnet18

    return resnet18(spatial_dims=2, n_input_channels=1, conv1_t_size=3, conv1_t_stride=1, no_max_pool=True,
                    num_classes=2)


def _monai_resnet18_224() -> nn.Module:
    from monai.networks.nets import resnet18

    return resnet18(spatial_dims=2, n_input_channels=3, num_classes=2)


def _monai_densenet121() -> nn.Module:
    from monai.networks.nets import DenseNet121

    return DenseNet121(spatial_dims=2, in_channels=3, out_channels=2)


def _monai_resnet18_3d_28() -> nn.Module:
    from monai.networks.nets import resnet18

    # MedMNIST 3-D's variant: a 3x3x3 stride-1 stem and no max pool on 28^3 volumes.
    return resnet18(spatial_dims=3, n_input_channels=1, conv1_t_size=3, conv1_t_stride=1, no_max_pool=True,
                    num_classes=2)


CASES = [
    NetworkCase("image_resnet", _image_resnet, (1, 28, 28)),
    NetworkCase("ecg_conv_gru", _ecg_recurrent, (1, 187)),
    NetworkCase("gan_generator", _gan_generator, (GAN_LATENT,)),
    NetworkCase("monai_resnet18_28", _monai_resnet18_28, (1, 28, 28)),
    NetworkCase("monai_resnet18_224", _monai_resnet18_224, (3, 224, 224), opt_in_batches=(32,)),
    NetworkCase("monai_densenet121_64", _monai_densenet121, (3, 64, 64)),
    NetworkCase("monai_resnet18_3d_28", _monai_resnet18_3d_28, (1, 28, 28, 28), opt_in_batches=(32,)),
]


# -- the variants: each gets its own deep copy of the model and the input, and returns a function of the input --

def _eager(model: nn.Module, x: torch.Tensor):
    return model


def _compile(model: nn.Module, x: torch.Tensor):
    return torch.compile(model)


def _onnxrt(model: nn.Module, x: torch.Tensor):
    if x.device.type != "cpu":
        raise Skip("ONNX Runtime is measured on its CPUExecutionProvider only")
    try:
        import onnxruntime
    except ImportError as e:
        raise Skip(f"{e.name} is not installed (pip install 'medkern[bench]')") from e
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice, once per network
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), buffer, input_names=["x"], output_names=["y"], dynamo=False)
    except ImportError as e:  # torch.onnx needs onnx and onnxscript
        raise Skip(f"ONNX export needs {e.name}, which is not installed (pip install 'medkern[bench]')") from e
    except Exception as e:
        raise Skip(f"ONNX export failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # Idle ONNX Runtime workers otherwise spin on the cores the next variant in the interleaved rounds needs
    # (torch eager at batch 1 measured 2x slower beside a spinning session on 2 cores).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    def run(x):
        return torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    return run


def _patch(model: nn.Module, x: torch.Tensor):
    return medkern.patch(model)


def _optimize(model: nn.Module, x: torch.Tensor):
    if not hasattr(medkern, "optimize"):
        raise Skip("this medkern has no medkern.optimize yet")
    return medkern.optimize(model)


VARIANTS = {"eager": _eager, "compile": _compile, "onnxrt": _onnxrt, "patch": _patch, "medkern": _optimize}


# -- the harness ------------------------------------------------------------------------------------------------

def prepared(case: NetworkCase) -> nn.Module:
    """The case's network from a fixed seed, in eval mode, with BatchNorm statistics and affine parameters far
    from their initial 0 and 1, so that folding them into the convolutions is exercised."""
    torch.manual_seed(SEED)
    model = case.build()
    g = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
                n = m.num_features
                m.running_mean.copy_(0.5 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
                if m.affine:
                    m.weight.copy_(0.5 + torch.rand(n, generator=g))
                    m.bias.copy_(0.2 * torch.randn(n, generator=g))
    return model.eval()


def check(out, reference: torch.Tensor) -> float:
    """The relative error of ``out`` (max abs error over the reference's max abs); raises ``Mismatch`` above
    ``TOLERANCE``."""
    if not isinstance(out, torch.Tensor) or out.shape != reference.shape:
        raise Mismatch(f"output {getattr(out, 'shape', type(out).__name__)}, expected a tensor of shape "
                       f"{tuple(reference.shape)}")
    err = (out.detach().double().to(reference.device) - reference).abs().max().item()
    scale = reference.abs().max().item()
    rel = err / scale if scale > 0 else err
    if not rel <= TOLERANCE:  # also catches NaN
        raise Mismatch(f"max abs error {err:.3g} against torch float64 is {rel:.3g} of the output's max abs "
                       f"{scale:.3g} (tolerance {TOLERANCE:g}); not timed")
    return rel


def measure(model: nn.Module, x: torch.Tensor, variants: dict, *, device: str, repeats: int,
            min_round_s: float) -> dict[str, dict]:
    """``{variant: {"status", "detail", "rel_error", "seconds"}}``: each variant built from its own deep copy of
    ``model``, checked on ``x`` against the float64 model, and, where it passes, timed on ``x``. ``status`` is
    "ok", "skipped" (it cannot run here), "mismatch" or "error" (it raised)."""
    # One network class compiled for many rows (batches, variants, MONAI's two ResNets) would reach dynamo's
    # recompile limit, past which it runs the model eagerly without a word.
    torch.compiler.reset()
    with torch.inference_mode():
        reference = copy.deepcopy(model).double()(x.double())
    results, timed = {}, {}
    for name, build in variants.items():
        result = results[name] = {"status": "ok", "detail": "", "rel_error": float("nan"), "seconds": float("nan")}
        try:
            fn = build(copy.deepcopy(model), x)  # outside inference mode: an ONNX export traces the model
            with torch.inference_mode():
                result["rel_error"] = check(fn(x), reference)
            timed[name] = fn
        except Skip as e:
            result.update(status="skipped", detail=str(e))
        except Mismatch as e:
            result.update(status="mismatch", detail=str(e))
        except Exception as e:
            result.update(status="error", detail=f"{type(e).__name__}: {e}")
    if timed:
        with torch.inference_mode():
            seconds = compare({k: (lambda fn=fn: fn(x)) for k, fn in timed.items()}, device=device, repeats=repeats,
                              min_round_s=min_round_s)
        for k, s in seconds.items():
            results[k]["seconds"] = s
    return results


# -- selection, table, CSV and chart ----------------------------------------------------------------------------

CSV_FIELDS = ["network", "batch", "input_shape", "variant", "status", "ms_per_batch", "items_per_s",
              "speedup_vs_eager", "rel_error", "detail", "device", "device_name", "threads", "medkern_threads",
              "backend", "commit", "torch_version", "onnxruntime_version", "medkern_version"]


def plan(cases: list[NetworkCase], select: str) -> tuple[list[tuple[NetworkCase, int]], list[str]]:
    """The (case, batch) rows whose name (``<case>_b<batch>``) contains ``select``, and a note for each opt-in
    row left out because ``select`` does not name it in full."""
    rows, notes = [], []
    for case in cases:
        for batch in BATCHES:
            name = case.row_name(batch)
            if select not in name:
                continue
            if batch in case.opt_in_batches and select != name:
                notes.append(f"{name} left out (slow): run it with --case {name}")
                continue
            rows.append((case, batch))
    return rows, notes


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return ""


def _ms(result: dict) -> float:
    return result["seconds"] * 1e3


def _cell(result: dict) -> str:
    return {"ok": f"{_ms(result):.3f}", "skipped": "skip", "mismatch": "FAIL", "error": "error"}[result["status"]]


def _ratio(results: dict, other: str) -> str:
    ours, theirs = results.get(OURS), results.get(other)
    if not ours or not theirs or ours["status"] != "ok" or theirs["status"] != "ok":
        return "-"
    return f"{_ms(theirs) / _ms(ours):.2f}x"


def plot(rows: list[dict], path: Path, title: str) -> bool:
    """A bar chart of each variant's speed-up over torch eager, grouped by network and batch, at ``path``; False
    when matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure  # no pyplot: the caller's matplotlib backend stays as it is
    except ImportError:
        return False
    groups = list(dict.fromkeys(f"{r['network']}\nbatch {r['batch']}" for r in rows))
    variants = [v for v in dict.fromkeys(r["variant"] for r in rows if r["status"] == "ok") if v != "eager"]
    width = 0.8 / max(len(variants), 1)
    fig = Figure(figsize=(max(6.0, 1.4 * len(groups)), 4.5), layout="constrained")
    ax = fig.add_subplot()
    for i, variant in enumerate(variants):
        speedup = {f"{r['network']}\nbatch {r['batch']}": r["speedup_vs_eager"] for r in rows
                   if r["variant"] == variant}
        ax.bar([g + (i - (len(variants) - 1) / 2) * width for g in range(len(groups))],
               [speedup.get(name, float("nan")) for name in groups], width, label=variant)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set_ylabel("speed-up over torch eager (x)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    return True


def run(*, device: str = "cpu", select: str = "", repeats: int = 7, min_round_s: float = 0.05,
        csv_path: str | Path | None = None, backend: str = "", cases: list[NetworkCase] | None = None,
        variants: dict | None = None, print_fn=print) -> list[dict]:
    """Measures each selected network and batch on each variant, prints a table, and appends one CSV row per
    network, batch and variant to ``csv_path`` (with a bar chart beside it, ``<csv stem>.png``, of this run's
    rows). ``cases`` and ``variants`` (name -> ``build(model, x)`` returning a function of the input) default to
    ``CASES`` and ``VARIANTS``. Returns the CSV rows."""
    variants = VARIANTS if variants is None else variants
    selected, notes = plan(CASES if cases is None else cases, select)
    threads = torch.get_num_threads()
    facts = {"device": device, "device_name": machine.device_name(device), "threads": threads,
             "medkern_threads": _native._C.num_threads() if _native._C is not None else "", "backend": backend,
             "commit": machine.commit(), "torch_version": torch.__version__,
             "onnxruntime_version": _package_version("onnxruntime"), "medkern_version": medkern.__version__}
    others = [v for v in variants if v != OURS] if OURS in variants else []
    print_fn(f"# {facts['device_name']}, {threads} threads, torch {facts['torch_version']}, onnxruntime "
             f"{facts['onnxruntime_version'] or 'missing'}, medkern backend {backend or 'in force'}, float32")
    print_fn(f"# ms per call, i.e. per batch (items/s in the CSV), median of {repeats} interleaved rounds; "
             f"vs X = X's ms / {OURS}'s ms (>1: {OURS} faster); every variant is checked against torch in float64 "
             f"first (relative tolerance {TOLERANCE:g}) and only timed if it agrees")
    for note in notes:
        print_fn(f"# {note}")
    print_fn(" ".join([f"{'network':<22} {'batch':>5}", *(f"{v + ' ms':>11}" for v in variants),
                       *(f"{'vs ' + v:>10}" for v in others)]))
    rows = []
    for case, batch in selected:
        try:
            model = prepared(case)
        except ImportError as e:
            print_fn(f"{case.row_name(batch)}: skipped, {e.name or e} is not installed (pip install 'medkern[bench]')")
            continue
        x = torch.randn(batch, *case.item_shape, generator=torch.Generator().manual_seed(SEED + batch)).to(device)
        results = measure(model.to(device), x, variants, device=device, repeats=repeats, min_round_s=min_round_s)
        print_fn(" ".join([f"{case.name:<22} {batch:>5}", *(f"{_cell(r):>11}" for r in results.values()),
                           *(f"{_ratio(results, v):>10}" for v in others)]))
        eager = results.get("eager", {})
        for name, r in results.items():
            if r["status"] != "ok":
                print_fn(f"    {name} {r['status'].upper()}: {r['detail']}")
            speedup = _ms(eager) / _ms(r) if eager.get("status") == "ok" and r["status"] == "ok" else float("nan")
            rows.append({"network": case.name, "batch": batch, "input_shape": "x".join(map(str, x.shape)),
                         "variant": name, "status": r["status"], "ms_per_batch": _ms(r),
                         "items_per_s": batch / r["seconds"], "speedup_vs_eager": speedup,
                         "rel_error": r["rel_error"], "detail": r["detail"], **facts})
    failed = sorted({f"{r['network']}_b{r['batch']} {r['variant']}" for r in rows
                     if r["status"] in ("mismatch", "error")})
    if failed:
        print_fn(f"FAILED ({len(failed)}): {', '.join(failed)}")
    if csv_path and rows:
        path = Path(csv_path)
        append_csv(path, CSV_FIELDS, rows, ".6g")
        chart = path.with_suffix(".png")
        if plot(rows, chart, f"{facts['device_name']}, {threads} threads, commit {facts['commit']}"):
            print_fn(f"speed-ups over torch eager plotted in {chart}")
    return rows
