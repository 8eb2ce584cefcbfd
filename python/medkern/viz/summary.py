"""``summary.txt``: a run folder's record (what goes into ``metrics.json``) told as a short README: what was
trained, what the validation data chose and on which numbers, and the test results in the field's terms."""
from __future__ import annotations

import math
from pathlib import Path


def _num(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "undefined"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _with_ci(metrics: dict, name: str) -> str:
    ci = metrics.get("ci", {}).get(name)
    shown = _num(metrics.get(name))
    if ci and None not in ci and all(math.isfinite(v) for v in ci):
        shown += f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})"
    return shown


def _shapes(record: dict) -> list[str]:
    shapes = record.get("shapes", {})
    return [f"  {split}: {shape[0]} items of shape {tuple(shape[1:])}" for split, shape in shapes.items() if shape]


def _what(record: dict) -> list[str]:
    lines = [f"Data: {record.get('data', 'not recorded')}", *_shapes(record)]
    names = record.get("class_names")
    if names:
        kind = "ordered grades, lowest first" if record.get("ordinal") else "classes"
        lines.append(f"  {len(names)} {kind}: {', '.join(map(str, names))}")
    if "model" in record:
        members = record.get("ensemble", 1)
        lines += ["", "Recipe",
                  f"  model: {record['model']}, network {record.get('network', '?')} on {record.get('layers', '?')} "
                  f"layers, " + (f"an ensemble of {members} averaging their probabilities" if members > 1 else
                                 "no ensemble"),
                  "  architecture: " + ", ".join(f"{k} {v}" for k, v in record.get("arch", {}).items())]
    train = record.get("train")
    if train:
        loss = train["loss"] + (f" (gamma {train['focal_gamma']})" if train["loss"] == "focal" else "")
        extras = [f"class weights {train['class_weight']}" if train.get("class_weight") else None,
                  f"sampler {train['sampler']}" if train.get("sampler") else None,
                  f"EMA of the weights {train['ema']}" if train.get("ema") else None]
        lines.append(f"  training: up to {train['epochs']} epochs (ran {record.get('epochs_run', '?')}), batch "
                     f"{train['batch_size']}, AdamW lr {train['lr']:g}, weight decay {train['weight_decay']:g}, "
                     f"{train['schedule']} schedule, loss {loss}, augmentation {'on' if train['augment'] else 'off'}"
                     + "".join(f", {e}" for e in extras if e))
    if "temperature" in record:
        lines.append(f"  temperature: {_num(record['temperature'])} (probabilities = softmax(logits / T))")
    return lines


def _why(record: dict) -> list[str]:
    """The choices made on the validation split, each with the validation numbers it rests on."""
    val, train = record.get("val"), record.get("train")
    if not val or not train:
        return []
    cv = record.get("recipe", {}).get("validation", {}).get("mode") == "cv"
    where = (f"out-of-fold predictions of cross-validation over the training data ({val.get('n', '?')} items"
             if cv else f"the validation split ({val.get('n', '?')} items")
    lines = ["", f"Chosen on {where}; the test split played no part)"]
    if record.get("best_epoch") is not None:
        lines.append(f"  weights of epoch {record['best_epoch']}: best validation {train['monitor']} "
                     f"{_num(record.get('best_score'), 4)}"
                     + (f" (early-stopping patience {train['patience']} epochs)" if train.get("patience") else ""))
    cal = val.get("calibration")
    if cal and train.get("calibrate"):
        lines.append(f"  temperature {_num(cal['temperature'])}: minimises validation NLL, "
                     f"{_num(cal['before']['nll'], 4)} -> {_num(cal['after']['nll'], 4)} (ECE "
                     f"{_num(cal['before']['ece'])} -> {_num(cal['after']['ece'])}, Brier "
                     f"{_num(cal['before']['brier'])} -> {_num(cal['after']['brier'])})")
    if record.get("threshold") is not None:
        rule = (f"the highest with validation sensitivity >= {train['target_sensitivity']}"
                if train.get("threshold") == "sensitivity" else "maximises Youden's J on validation")
        lines.append(f"  decision threshold {_num(record['threshold'])} on the positive-class probability: {rule} "
                     f"(sensitivity {_num(val.get('sensitivity'))}, specificity {_num(val.get('specificity'))})")
    lines.append(f"  validation results: AUROC {_num(val.get('auroc'))}, accuracy (argmax) "
                 f"{_num(val.get('accuracy_argmax'))}, balanced accuracy (argmax) "
                 f"{_num(val.get('balanced_accuracy_argmax'))}")
    return lines


def _score(s: dict) -> str:
    return f"AUROC {_num(s['auroc'], 4)}, log-loss {_num(s['nll'], 4)}"


def _recipe(record: dict) -> list[str]:
    """How the time-budget search (``medkern.train.recipe``) chose the recipe, each choice with its numbers."""
    r = record.get("recipe")
    if not r:
        return []
    v = r["validation"]
    if r.get("replayed"):
        return ["", f"Recipe replayed from a recorded one ({len(r['units'])} member(s), {r['networks']} networks, "
                    f"{v['mode']}), nothing timed"]
    lines = ["", f"Recipe chosen within a {r['budget_s']:.0f} s time budget, on held-out data: {v['why']}",
             f"  epochs: one took {r['probe_epoch_s']:.1f} s, so up to {r['epochs']} per network (later members up "
             f"to {r['member_epochs']}, from the first's best epochs and the time left)"]
    widths = [f"x{c['scale']:g} " + ("skipped (budget)" if "skipped" in c else
                                     f"{_score(c)} in {c['seconds']:.0f} s") for c in r["width"]["candidates"]]
    lines.append(f"  width: {'; '.join(widths)} -> x{r['width']['chosen']:g}")
    for i, m in enumerate(r["members"]["added"], start=2):
        lines.append(f"  member {i}: alone {_score(m['alone'])}; ensemble {_score(m['ensemble'])} -> {m['decision']}")
    lines.append(f"  {len(r['units'])} member(s), {r['networks']} network(s); stopped adding: "
                 f"{r['members']['stopped']}")
    if r.get("tta"):
        t = r["tta"]
        lines.append(f"  test-time flip averaging: off {_score(t['off'])}; on {_score(t['on'])} -> "
                     + ("on" if t["chosen"] else "off"))
    lines.append(f"  chosen in {r['search_s']:.0f} s. Epochs and which candidates fitted depend on this machine's "
                 "speed and load: --recipe metrics.json trains this recipe again, timing nothing")
    return lines


def _per_class(m: dict) -> list[str]:
    counts = [sum(row) for row in m.get("confusion_matrix", [])]
    width = max(len("class"), *(len(str(name)) for name in m["per_class"]))
    lines = [f"  {'class':<{width}}  {'n':>5}  {'Se':>6}  {'+P':>6}  {'AUROC':>6}"]
    for (name, c), n in zip(m["per_class"].items(), counts):
        lines.append(f"  {name:<{width}}  {n:>5}  {_num(c['sensitivity']):>6}  {_num(c['ppv']):>6}  "
                     f"{_num(c['auroc']):>6}")
    return lines


def _test(record: dict) -> list[str]:
    m = record.get("test")
    if not m:
        return []
    lines = ["", f"Test results ({m.get('n', '?')} items)"]
    if "auroc" not in m:  # a forecaster
        return lines + [f"  {k}: {_num(v, 4)}" for k, v in m.items() if isinstance(v, float)]
    multiclass = len(m.get("per_class", {})) > 2
    lines += [f"  AUROC{' (macro, one-vs-rest)' if multiclass else ''}: {_with_ci(m, 'auroc')}",
              f"  accuracy (argmax): {_with_ci(m, 'accuracy_argmax')}",
              f"  balanced accuracy (argmax): {_num(m.get('balanced_accuracy_argmax'))}"]
    if m.get("threshold") is not None:
        lines.append(f"  at the validation threshold {_num(m['threshold'])}: accuracy {_with_ci(m, 'accuracy')}, "
                     f"sensitivity {_with_ci(m, 'sensitivity')}, specificity {_with_ci(m, 'specificity')}")
    if "quadratic_weighted_kappa" in m:
        lines += [f"  quadratic-weighted kappa: {_with_ci(m, 'quadratic_weighted_kappa')}",
                  f"  mean absolute grade error: {_with_ci(m, 'mean_absolute_grade_error')}"]
    cal = m.get("calibration")
    if cal:
        lines.append(f"  calibration (temperature 1 -> {_num(cal['temperature'])}): ECE {_num(cal['before']['ece'])} "
                     f"-> {_num(cal['after']['ece'])}, Brier {_num(cal['before']['brier'])} -> "
                     f"{_num(cal['after']['brier'])}, NLL {_num(cal['before']['nll'])} -> {_num(cal['after']['nll'])}")
    if m.get("per_class"):
        lines += ["  per class (Se = sensitivity, +P = positive predictivity, at the decision rule):", *_per_class(m)]
    return lines


def summary_text(record: dict) -> str:
    """The summary of a run's record (keys it lacks, e.g. an evaluation of a saved model has no training
    record, leave their section out)."""
    task = f" ({record['task']})" if "task" in record else ""
    title = (f"medkern run{task}: {record.get('model', '')}" if "train" in record else
             f"medkern evaluation of a saved {record.get('model', 'model')}")
    lines = [title, "=" * len(title), *_what(record), *_recipe(record), *_why(record), *_test(record)]
    return "\n".join(lines) + "\n"


def write_summary(record: dict, path) -> Path:
    path = Path(path)
    path.write_text(summary_text(record))
    return path
