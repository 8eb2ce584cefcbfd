"""The ``medkern`` command line: ``info``, ``bench``, ``train``, ``evaluate``, ``predict``, ``serve``, ``sample`` and
``demo``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


def _info(args) -> int:
    import medkern
    from medkern import _native, backends

    print(f"medkern {medkern.__version__} (torch {torch.__version__}, python {sys.version.split()[0]})")
    # Each compiled module describes its build from build_info() (b) and the module itself (m).
    for label, module, error, describe in (
            ("CPU", _native._C, _native.cpu_error,
             lambda m, b: f"ISA {b['isa']} ({b['vector_bytes'] * 8}-bit vectors), arch={b['arch']}, "
                          f"OpenMP {b['openmp']} with {m.num_threads()} threads, compiler {b['compiler']}"),
            ("CUDA", _native._C_cuda, _native.cuda_error,
             lambda m, b: f"archs {b['cuda_archs']}, CUDA runtime {b['cuda_runtime_version']}, "
                          f"{m.device_count()} device(s) visible")):
        print(f"{label} module: " + (describe(module, module.build_info()) if module is not None else
                                     f"missing: {error}"))
    print(f"backend in force: {backends.current()}")
    for status in backends.available().values():
        print(f"  {status}")
    return 0


def _bench(args) -> int:
    from medkern.bench import runner

    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    family = args.family
    if args.train:  # whole networks, trained: --family networks --train is --family training
        if family not in (runner.NETWORKS, runner.TRAINING):
            raise ValueError(f"--train goes with --family {runner.NETWORKS}")
        family = runner.TRAINING
    csv_path = args.csv if args.csv is not None else {
        runner.NETWORKS: "bench-networks.csv", runner.TRAINING: "bench-training.csv"}.get(family, "bench-results.csv")
    rows = runner.run(device=args.device, backend=args.backend, select=args.case, family=family,
                      repeats=args.repeats, min_round_s=args.min_round, csv_path=csv_path, dtype=dtype)
    # A networks variant that disagrees with torch (or raised) was not timed: the run did not do its job.
    return 1 if any(r.get("status") in ("mismatch", "error") for r in rows) else 0


def _demo(args) -> int:
    from medkern.models import demo

    _info(args)
    print()
    return demo.run(args.out, n_train=args.n_train, n_test=args.n_test, epochs=args.epochs,
                    speed_repeats=args.speed_repeats, n_boot=args.n_boot, gan_epochs=args.gan_epochs,
                    volume_epochs=args.volume_epochs)


def _train(args) -> int:
    from medkern.models import runs
    from medkern.train import shutdown

    names = ({"width": "width", "depth": "depth", "blocks": "blocks"} if args.task == "classify" else
             {"rnn": "rnn", "hidden": "hidden", "num_layers": "rnn_layers", "bidirectional": "bidirectional",
              "conv_channels": "conv_channels"})
    # Only what was given: the rest are the model's defaults.
    arch = {k: getattr(args, a) for k, a in {**names, "dropout": "dropout", "ensemble": "ensemble"}.items()
            if getattr(args, a) is not None}
    threshold, target = (None if args.threshold == "none" else args.threshold), None
    if args.threshold.startswith("sensitivity:"):
        threshold, target = "sensitivity", float(args.threshold.partition(":")[2])
    options = {"device": args.device, "num_workers": args.workers, "progress": not args.quiet,
               "class_weight": args.class_weight, "sampler": args.sampler, "threshold": threshold,
               "target_sensitivity": target}
    options.update({k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr),
                                      ("weight_decay", args.weight_decay), ("patience", args.patience),
                                      ("loss", args.loss), ("monitor", args.monitor), ("ema", args.ema))
                    if v is not None})
    if args.no_augment:
        options["augment"] = False
    if getattr(args, "cv_records", None):
        return _cv_records(args, arch, options)
    budget, recipe = _budget(args), None
    if getattr(args, "recipe", None):
        saved = json.loads(Path(args.recipe).read_text())
        recipe = saved.get("recipe", saved)  # a run's metrics.json, or its "recipe" alone
    try:
        record = runs.train_run(args.task, args.out, data=args.data, test=args.test, val_fraction=args.val_fraction,
                                seed=args.seed, layers=args.layers, arch=arch, options=options,
                                reader=_reader(args), n_boot=args.n_boot, resume=args.resume,
                                labels=getattr(args, "labels", None), time_budget=budget, recipe=recipe,
                                log=None if args.quiet else print)
    finally:
        shutdown()
    if record is not None:
        _print_metrics(record["test"], f"test metrics ({args.out}/metrics.json)")
    return 0


def _cv_records(args, arch, options) -> int:
    from medkern.models.record_cv import cross_validate_records, se_ppv_table

    given = {k: v for k, v in options.items() if v is not None}  # unset flags keep the cross-validation's defaults
    record = cross_validate_records(args.data, folds=args.cv_records, seed=args.seed, val_fraction=args.val_fraction,
                                    layers=args.layers, arch=arch, options=given, reader=_reader(args), out=args.out,
                                    log=None if args.quiet else print)
    print(f"{record['protocol']}, pooled over {record['n']} beats in {record['seconds']:.0f} s "
          f"({args.out}/metrics.json)")
    print(se_ppv_table(record["test"]))
    return 0


def _budget(args):
    """The time budget for the recipe search: "auto" (the default for the data's kind) unless the run is made
    by hand (--epochs, --ensemble, --resume, --recipe) or --time-budget 0 turns the search off."""
    if args.task == "forecast":
        return None
    hand_made = [flag for flag, on in (("--epochs", args.epochs is not None), ("--ensemble", args.ensemble is not None),
                                       ("--resume", args.resume), ("--recipe", args.recipe is not None)) if on]
    if args.time_budget and hand_made:
        raise ValueError(f"--time-budget chooses the recipe; {', '.join(hand_made)} fix it by hand: give one or the "
                         "other")
    if hand_made or args.time_budget == 0:
        return None
    return args.time_budget or "auto"


def _reader(args) -> dict:
    if args.data is None or str(args.data).startswith("synthetic"):
        return {k: v for k, v in (("n_train", args.n_train), ("n_test", args.n_test)) if v is not None}
    return {"records": args.records.split(",")} if getattr(args, "records", None) else {}


def _print_metrics(m: dict, title: str) -> None:
    print(title)
    for k, v in m.items():
        if isinstance(v, float):
            ci = m.get("ci", {}).get(k)
            print(f"  {k:<26} {v:.4f}" + (f"  (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci and None not in ci else ""))
        elif v is None:
            print(f"  {k:<26} undefined")


def _evaluate(args) -> int:
    from medkern.models import runs

    record = runs.evaluate_run(args.run_dir, args.data, test=args.test, reader=_reader(args), n_boot=args.n_boot)
    _print_metrics(record["test"], f"metrics on {record['data']} ({record['out']}/metrics.json)")
    return 0


def _predict(args) -> int:
    from medkern.models import runs

    for row in runs.predict_files(args.run_dir, args.inputs):
        print(json.dumps(row))
    return 0


def _serve(args) -> int:
    try:
        from medkern.serving import app
    except ImportError as e:
        print(f"error: medkern serve needs the serve extra (pip install 'medkern[serve]'): {e}", file=sys.stderr)
        return 2
    if args.max_batch < 1 or args.max_wait_ms < 0 or args.max_body_mb <= 0:
        print("error: --max-batch must be >= 1, --max-wait-ms >= 0 and --max-body-mb > 0", file=sys.stderr)
        return 2
    print(f"medkern serve: {args.run_dir} on http://{args.host}:{args.port} ({args.layers or 'saved'} layers, "
          f"max batch {args.max_batch}, max wait {args.max_wait_ms} ms)", flush=True)
    app.serve(args.run_dir, host=args.host, port=args.port, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
              layers=args.layers, max_body_bytes=int(args.max_body_mb * 1024 * 1024), log_level=args.log_level)
    return 0


def _add_run_commands(sub) -> None:
    train = sub.add_parser("train", help="train a model and write a run folder")
    tasks = train.add_subparsers(dest="task", required=True)
    for task, text in (("classify", "image or volume classification (ImageClassifier, VolumeClassifier)"),
                       ("sequence", "signal classification (SequenceClassifier)"),
                       ("forecast", "forecasting the next values of a series (SequenceForecaster)")):
        p = tasks.add_parser(task, help=text)
        p.add_argument("--data", default=None, help="MedMNIST .npz (2-D, or 3-D volumes: trains a VolumeClassifier), "
                       "image folder with labels CSV, UCR .txt/.tsv, WFDB record, or "
                       "synthetic[:lesions|nodules|ecg|vitals] (default: synthetic)")
        p.add_argument("--test", default=None, help="the test file where --data has no test split")
        p.add_argument("--out", required=True, help="run folder")
        p.add_argument("--layers", default="medkern", choices=["medkern", "torch"])
        p.add_argument("--epochs", type=int)
        p.add_argument("--batch-size", type=int, help="global batch (split over torchrun processes)")
        p.add_argument("--lr", type=float)
        p.add_argument("--weight-decay", type=float)
        p.add_argument("--patience", type=int, help="early-stopping patience in epochs")
        p.add_argument("--monitor", help="validation metric for early stopping and best checkpoint")
        p.add_argument("--dropout", type=float)
        p.add_argument("--ema", type=float, help="keep an exponential moving average of the weights (decay per step)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--ensemble", type=int,
                       help="train this many networks (seeds SEED, SEED+1, ...) and average them (default 1)")
        p.add_argument("--val-fraction", type=float, default=0.15, help="carved from train where there is no val split")
        p.add_argument("--n-train", type=int, help="synthetic data: training items")
        p.add_argument("--n-test", type=int, help="synthetic data: test items")
        p.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples for the 95%% CIs")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
        p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
        p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
        p.add_argument("--quiet", action="store_true", help="no progress output")
        p.add_argument("--no-augment", action="store_true")
        p.add_argument("--class-weight", default=None, choices=["balanced"])
        p.add_argument("--sampler", default=None, choices=["weighted"])
        p.add_argument("--loss", choices=["ce", "focal", "cumulative"], help="cumulative: ordered grades only")
        p.add_argument("--threshold", default="youden" if task != "forecast" else "none",
                       help="binary decision threshold on validation: youden, sensitivity:0.9, or none (0.5)")
        if task != "forecast":
            # dest "labels": "task" already names the subcommand
            p.add_argument("--task", dest="labels", choices=["nominal", "ordinal"],
                           help="ordinal: the classes are ordered grades (lowest first), trained on a cumulative "
                                "loss and reported with quadratic-weighted kappa and mean absolute grade error; "
                                "default: what the data's metadata says, else nominal")
        if task != "forecast":
            p.add_argument("--time-budget", type=float, metavar="SECONDS",
                           help="choose the recipe (epochs, width, ensemble members, test-time flips, temperature, "
                                "threshold) on held-out data within this wall time: the validation split, or "
                                "cross-validation on the training data where that split has fewer than 100 items "
                                "(default 300 for images and signals, 600 for volumes; 0: off). The choices depend "
                                "on the machine's speed: --recipe RUN/metrics.json trains the chosen one again. "
                                "--epochs, --ensemble or --resume make the run by hand, without a search")
            p.add_argument("--recipe", metavar="FILE", help="train the recipe recorded in a run's metrics.json "
                           "again, timing nothing (same data and seed: the same weights)")
        if task == "classify":
            p.add_argument("--width", type=int, help="channels of the first stage (default 32; volumes 16)")
            p.add_argument("--depth", type=int, help="stages (default 3; volumes 4)")
            p.add_argument("--blocks", type=int, help="residual blocks per stage (default 1)")
        else:
            p.add_argument("--rnn", choices=["gru", "lstm"], help="default gru")
            p.add_argument("--hidden", type=int, help="recurrent units (default 64)")
            p.add_argument("--rnn-layers", type=int, help="stacked recurrent layers (default 1)")
            p.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, help="default on")
            p.add_argument("--conv-channels", type=int,
                           help="1-D conv front end channels, 0 for none (default 32; forecasting 0)")
        if task == "sequence":
            p.add_argument("--cv-records", type=int, metavar="K",
                           help="--data a folder of WFDB records: K-fold leave-records-out cross-validation "
                                "(pooled per-class Se and +P) instead of one training run")
            p.add_argument("--records", help="--data a folder of WFDB records: only these, comma-separated names")
        p.set_defaults(func=_train)
    _add_synthesis_commands(tasks, sub)
    ev = sub.add_parser("evaluate", help="evaluate a run's model on data")
    ev.add_argument("run_dir")
    ev.add_argument("--data", default=None)
    ev.add_argument("--test", default=None)
    ev.add_argument("--n-train", type=int)
    ev.add_argument("--n-test", type=int)
    ev.add_argument("--n-boot", type=int, default=200)
    ev.set_defaults(func=_evaluate)
    pr = sub.add_parser("predict", help="predict with a run's model: images, .npy arrays or text series")
    pr.add_argument("run_dir")
    pr.add_argument("inputs", nargs="+")
    pr.set_defaults(func=_predict)
    sv = sub.add_parser("serve", help="serve a run's model over HTTP (POST /predict, GET /health, GET /metrics)")
    sv.add_argument("run_dir")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--max-batch", type=int, default=32, help="rows per micro-batch at most")
    sv.add_argument("--max-wait-ms", type=float, default=2.0,
                    help="how long a micro-batch waits to fill while requests arrive concurrently")
    sv.add_argument("--layers", default=None, choices=["medkern", "torch"],
                    help="run the model on medkern's or torch's layers (default: those it was trained with)")
    sv.add_argument("--max-body-mb", type=float, default=16.0, help="largest request body accepted (MiB)")
    sv.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    sv.set_defaults(func=_serve)


def _synthesize(args) -> int:
    from medkern.models import synthesis

    arch = {k: v for k, v in (("width", args.width), ("latent_dim", args.latent_dim),
                              ("spectral_norm", args.spectral_norm)) if v is not None}
    arch["conditioning"] = None if args.conditioning == "none" else args.conditioning
    options = {"device": args.device, "progress": not args.quiet, "loss": args.loss,
               "penalty": None if args.penalty == "none" else args.penalty}
    options.update({k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr_g", args.lr_g),
                                      ("lr_d", args.lr_d), ("penalty_weight", args.penalty_weight),
                                      ("d_steps", args.d_steps), ("ema", args.ema), ("time_limit", args.time_limit),
                                      ("augment", args.augment))
                    if v is not None})
    classifier = {"epochs": args.classifier_epochs} if args.classifier_epochs is not None else {}
    record = synthesis.train_synthesis_run(
        args.out, data=args.data, test=args.test, val_fraction=args.val_fraction, seed=args.seed, layers=args.layers,
        arch=arch, options=options, classifier_options=classifier, utility=not args.no_utility,
        utility_seeds=range(args.utility_seeds), n_boot=args.n_boot, reader=_reader(args), resume=args.resume,
        log=None if args.quiet else print)
    print(f"sample quality ({args.out}/metrics.json)")
    for key in ("fd", "kid", "precision", "recall", "diversity_ms_ssim", "memorization_ratio"):
        if key in record:
            print(f"  {key:<20} {record[key]:.4f}")
    print(f"  {'fd of blurred real':<20} {record['blurred']['fd']:.4f}")
    aug = record.get("augmentation")
    if aug:
        print(f"  augmentation: AUROC {aug['auroc_real']:.4f} -> {aug['auroc_real_plus_synthetic']:.4f}, minority "
              f"sensitivity {aug['sensitivity_real']:.4f} -> {aug['sensitivity_real_plus_synthetic']:.4f}")
    return 0


def _sample(args) -> int:
    from medkern.models import synthesis

    paths = synthesis.sample_run(args.run_dir, args.n, label=args.label, out=args.out, seed=args.seed)
    print(f"{len(paths)} images in {paths[0].parent if paths else args.out}")
    return 0


def _add_synthesis_commands(tasks, sub) -> None:
    from medkern.train.gan_config import LOSSES

    p = tasks.add_parser("synthesize", help="image synthesis (ImageGAN), with sample-quality metrics and the "
                                            "augmentation experiment")
    p.add_argument("--data", default=None, help="images with class labels: MedMNIST .npz, image folder with a "
                   "labels CSV, or synthetic[:lesions] (default)")
    p.add_argument("--test", default=None)
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--layers", default="medkern", choices=["medkern", "torch"])
    p.add_argument("--epochs", type=int, help="default 200")
    p.add_argument("--time-limit", type=float, help="stop after the epoch that crosses this many seconds")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr-g", type=float)
    p.add_argument("--lr-d", type=float)
    p.add_argument("--loss", default="hinge", choices=sorted(LOSSES))
    p.add_argument("--penalty", default="r1", choices=["r1", "wgan-gp", "none"])
    p.add_argument("--penalty-weight", type=float, help="R1 gamma or WGAN-GP lambda (default 1)")
    p.add_argument("--d-steps", type=int, help="discriminator steps per generator step (default 1)")
    p.add_argument("--ema", type=float, help="generator moving-average decay (default 0.999)")
    p.add_argument("--augment", help="comma-separated DiffAugment policies (default translation,cutout; '' none)")
    p.add_argument("--conditioning", default="projection", choices=["projection", "acgan", "none"])
    p.add_argument("--width", type=int, help="channels of the generator's last and the critic's first layer (32)")
    p.add_argument("--latent-dim", type=int)
    p.add_argument("--spectral-norm", action=argparse.BooleanOptionalAction)
    p.add_argument("--classifier-epochs", type=int, help="epochs of the embedding/utility classifiers (default 60)")
    p.add_argument("--no-utility", action="store_true", help="skip the train-on-real-plus-synthetic experiment")
    p.add_argument("--utility-seeds", type=int, default=1, help="classifier seeds in the utility experiment")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--n-train", type=int, help="synthetic data: training items")
    p.add_argument("--n-test", type=int, help="synthetic data: test items")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
    p.add_argument("--device", default="auto")
    p.add_argument("--resume", action="store_true", help="continue the GAN from RUN_DIR/checkpoint.pt")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_synthesize)
    sp = sub.add_parser("sample", help="write PNG images from a synthesis run's generator")
    sp.add_argument("run_dir")
    sp.add_argument("--n", type=int, default=64)
    sp.add_argument("--label", type=int, default=None, help="class to draw (conditional models)")
    sp.add_argument("--out", default=None, help="folder for the PNGs (default RUN_DIR/generated)")
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(func=_sample)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medkern", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, build flags and backends").set_defaults(func=_info)
    bench = sub.add_parser("bench", help="medkern vs torch, interleaved in one process")
    bench.add_argument("--case", default="", help="run only cases whose name contains this (networks, training: rows "
                       "<network>_b<batch>; an opt-in row, such as monai_resnet18_224_b32, only when named in full)")
    from medkern.bench import training
    from medkern.bench.runner import FAMILIES, NETWORKS, TRAINING

    bench.add_argument("--family", default="", choices=["", *FAMILIES, NETWORKS, TRAINING],
                       help=f"one op family (default: all of {', '.join(FAMILIES)}); '{NETWORKS}': whole-network "
                            "inference on torch eager, torch.compile, ONNX Runtime, medkern.patch and "
                            "medkern.optimize, batch 1 and 32, each checked against torch float64 first and not "
                            "timed if it disagrees (exit status 1); minutes, as it compiles and exports every "
                            f"network, so it runs only when named; '{TRAINING}' (or '{NETWORKS}' with --train): "
                            "whole-network training steps, likewise checked first and run only when named")
    bench.add_argument("--train", action="store_true",
                       help=f"with --family {NETWORKS}: one training step (forward, loss, backward, AdamW; a GAN's "
                            "discriminator step, then its generator step) on torch eager, torch.compile, "
                            "medkern.patch and torch.compile(backend='medkern'); by default of MONAI's "
                            "Generator/Discriminator pair (28x28, batch 64) and the project's ImageClassifier (batch "
                            "32), SequenceClassifier (batch 64) and conditional ImageGAN (batch 64), minutes on 2 "
                            "cores; slower, so each only when --case names it in full: "
                            f"{', '.join(c.row_name for c in training.CASES if c.opt_in)} (MONAI's ResNet-18, 2-d "
                            "and 3-d, and DenseNet-121)")
    bench.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    bench.add_argument("--backend", default=None, help="backend to measure (default: the one in force)")
    bench.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    bench.add_argument("--repeats", type=int, default=7, help="interleaved rounds; the median is reported")
    bench.add_argument("--min-round", type=float, default=0.05, help="seconds per round at least")
    bench.add_argument("--csv", default=None, help="append rows here ('' to skip; default bench-results.csv, "
                       "bench-networks.csv for --family networks, bench-training.csv with --train; these two also "
                       "write a speed-up bar chart beside it, same name with .png)")
    bench.set_defaults(func=_bench)
    demo = sub.add_parser("demo", help="the main job: train an image and an ECG model and a GAN on synthetic "
                                        "data, report metrics and plots, and time medkern layers against torch's")
    demo.add_argument("--out", default="medkern-demo", help="folder for the plots and metrics")
    demo.add_argument("--n-train", type=int, default=1500, help="synthetic training items per model")
    demo.add_argument("--n-test", type=int, default=500)
    demo.add_argument("--epochs", type=int, default=15)
    demo.add_argument("--speed-repeats", type=int, default=3, help="epochs timed per variant (median)")
    demo.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples for the 95%% CIs")
    demo.add_argument("--gan-epochs", type=int, default=24, help="epochs of the short synthesis run (0: skip it)")
    demo.add_argument("--volume-epochs", type=int, default=12,
                      help="epochs of the volume classifier on synthetic nodules, a quarter of --n-train (0: skip it)")
    demo.set_defaults(func=_demo)
    _add_run_commands(sub)
    args = parser.parse_args(argv)
    if getattr(args, "device", "cpu") == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:  # bad data or options: the message names the file or option
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
