"""Speed of whole models built from medkern layers against the same models (same weights) built from
torch layers, interleaved in one process: one training epoch and batch-1 inference latency.

    python benchmarks/model_speed.py [--n 1024] [--repeats 3] [--image-size 28] [--length 187]

The models are the demo's and the default recipes' (ImageClassifier width 16 and 32, SequenceClassifier
GRU and LSTM, the conditional ImageGAN), on synthetic data of the given sizes; the weights come from one
short training epoch.
Ratios above 1 mean medkern is faster. The machine may be shared: repeat a run that looks off.
"""
from __future__ import annotations

import argparse

import torch

from medkern import data as datasets
from medkern.models import ImageClassifier, ImageGAN, SequenceClassifier, speed


def cases(args):
    lesions = datasets.synthetic_lesions(args.n, size=args.image_size, seed=0)
    ecg = datasets.synthetic_ecg(args.n, length=args.length, seed=0)
    yield "ResNet w16 (demo)", ImageClassifier(width=16), lesions
    yield "ResNet w32 (default)", ImageClassifier(), lesions
    yield "conv+GRU h32 (demo)", SequenceClassifier(hidden=32, conv_channels=16), ecg
    yield "conv+GRU h64 (default)", SequenceClassifier(), ecg
    yield "LSTM h64, no conv", SequenceClassifier(rnn="lstm", conv_channels=0), ecg
    yield "cond. DCGAN w32 (default)", ImageGAN(), lesions


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1024, help="training items per epoch")
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed per variant (median)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--length", type=int, default=187)
    parser.add_argument("--only", default="", help="run only models whose name contains this")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.n} items per epoch, "
          f"batch {args.batch_size}; median of {args.repeats} interleaved epochs")
    print(speed.HEADER)
    for name, model, data in cases(args):
        if args.only not in name:
            continue
        if isinstance(model, ImageGAN):  # its own batch of 64; latency is generating 64 images
            model.fit(data, epochs=1, progress=False, log=None)
            rows = speed.format_rows(name, speed.compare_gan_layers(model, data, repeats=args.repeats), "generate 64")
        else:
            model.fit(data, epochs=1, batch_size=args.batch_size, progress=False, log=lambda s: None)
            rows = speed.format_rows(name, speed.compare_layers(model, data, batch_size=args.batch_size,
                                                                repeats=args.repeats))
        for row in rows:
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
