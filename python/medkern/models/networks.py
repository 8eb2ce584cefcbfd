"""The networks behind the models, written with torch's layer classes; ``build`` then swaps in medkern's
with ``medkern.patch`` (the swap keeps every weight), so the medkern and torch variants of a model are
the same network with the same initial weights, and each layer medkern gains is used as soon as it
registers its swap."""
from __future__ import annotations

import itertools
import math

import torch
from torch import nn

LAYERS = ("medkern", "torch")


# torch's layer classes for images (2) and volumes (3): one ResNet serves both.
SPATIAL = {
    2: {"conv": nn.Conv2d, "norm": nn.BatchNorm2d, "max_pool": nn.MaxPool2d, "avg_pool": nn.AdaptiveAvgPool2d},
    3: {"conv": nn.Conv3d, "norm": nn.BatchNorm3d, "max_pool": nn.MaxPool3d, "avg_pool": nn.AdaptiveAvgPool3d},
}
# Inputs larger than this (per side) get ResNet-18's stride-2 stem and max pool: a full-resolution first
# stage would cost more than the rest of the network. A volume has side**3 voxels, so its limit is lower.
FULL_RESOLUTION_MAX = {2: 64, 3: 32}


class BasicBlock(nn.Module):
    """He et al. 2016: two 3x3 (3x3x3) conv-BN pairs around an identity (or 1x1 projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, dims: int = 2):
        super().__init__()
        conv, norm = SPATIAL[dims]["conv"], SPATIAL[dims]["norm"]
        self.body = nn.Sequential(
            conv(cin, cout, 3, stride, 1, bias=False), norm(cout), nn.ReLU(inplace=True),
            conv(cout, cout, 3, 1, 1, bias=False), norm(cout))
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            conv(cin, cout, 1, stride, bias=False), norm(cout))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    """A small ResNet for images (``dims=2``) or volumes (``dims=3``) of any size: ``depth`` stages of
    ``blocks`` blocks, ``width * 2**i`` channels in stage i, halving the resolution from the second stage on,
    then global average pooling. The stem convolution has stride ``stem_stride``; inputs larger than
    ``FULL_RESOLUTION_MAX`` get a stride-2 stem and a max pool, as in ResNet-18.

    ``flip_average``: predictions (eval mode, autograd off) are the log of the mean class probability over
    the input and its mirror images along every spatial axis (``flip_axes``: only these, counted from the last, -1
    = width), for a network trained with those flips (a test-time ensemble of views it learned to see alike).
    With autograd on, as in Grad-CAM, and in training mode, the input alone goes through, so gradients refer to
    one view."""

    def __init__(self, in_channels: int, num_classes: int, *, width: int = 32, depth: int = 3, blocks: int = 1,
                 dropout: float = 0.1, input_size: int = 28, dims: int = 2, stem_stride: int = 1,
                 flip_average: bool = False, flip_axes: tuple | None = None):
        super().__init__()
        self.flip_average, self.flip_axes = flip_average, flip_axes
        if dims not in SPATIAL:
            raise ValueError(f"dims must be one of {sorted(SPATIAL)}, got {dims!r}")
        layer = SPATIAL[dims]
        big = input_size > FULL_RESOLUTION_MAX[dims]
        stem = [layer["conv"](in_channels, width, 3, 2 if big else stem_stride, 1, bias=False), layer["norm"](width),
                nn.ReLU(inplace=True)]
        self.stem = nn.Sequential(*stem, *([layer["max_pool"](3, 2, 1)] if big else []))
        layers, c = [], width
        for i in range(depth):
            for b in range(blocks):
                layers.append(BasicBlock(c, width * 2 ** i, 2 if i > 0 and b == 0 else 1, dims))
                c = width * 2 ** i
        # Grad-CAM reads the activations and gradients of ``features``, the last convolutional map.
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(layer["avg_pool"](1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c, num_classes))

    def forward(self, x):
        if self.flip_average and not self.training and not torch.is_grad_enabled():
            axes = range(2, x.dim()) if self.flip_axes is None else [x.dim() + a for a in self.flip_axes]
            views = [x.flip(flipped) for k in range(len(axes) + 1) for flipped in itertools.combinations(axes, k)]
            logp = torch.stack([self._logits(view).log_softmax(dim=1) for view in views])
            return torch.logsumexp(logp, dim=0) - math.log(len(views))
        return self._logits(x)

    def _logits(self, x):
        return self.head(self.features(self.stem(x)))

    def embed(self, x):
        """The globally pooled last feature map (N, channels), before dropout and the linear head."""
        return self.head[:2](self.features(self.stem(x)))


class RecurrentNet(nn.Module):
    """Signals ``(N, C, L)`` -> an optional 1-D conv front end (``conv_layers`` times conv, BN, ReLU and a
    2x max pool: a shorter, richer sequence, which the recurrent layer, sequential in time, runs through
    that much faster) -> an LSTM or GRU -> the last state of each direction concatenated with the mean over
    time -> a linear head.

    Inputs are standardised first: ``normalize="dataset"`` with per-channel statistics of the training set
    (buffers set by the model before training), ``"sample"`` with each series' own mean and standard
    deviation, which for forecasting (``target_channel`` set) are undone on the output so the prediction is
    in the target channel's units.

    ``side_features`` > 0: the last that many samples of channel 0 are per-item features, not signal
    (``medkern.data.ArrayDataset.side_features``, e.g. a beat's RR intervals); they are split off, standardised
    with the training set's statistics (buffers ``side_mean``/``side_std``) and joined to the pooled
    representation, and the head gets a hidden layer so that they can act together with the waveform."""

    def __init__(self, in_channels: int, out_features: int, *, rnn: str = "gru", hidden: int = 64,
                 num_layers: int = 1, bidirectional: bool = True, conv_channels: int = 32, conv_kernel: int = 7,
                 conv_layers: int = 2,
                 dropout: float = 0.1, normalize: str = "dataset", target_channel: int | None = None,
                 side_features: int = 0):
        super().__init__()
        self.normalize, self.target_channel, self.side_features = normalize, target_channel, side_features
        self.register_buffer("mean", torch.zeros(in_channels, 1))
        self.register_buffer("std", torch.ones(in_channels, 1))
        front, c = [], in_channels
        for _ in range(conv_layers if conv_channels else 0):
            front += [nn.Conv1d(c, conv_channels, conv_kernel, padding=conv_kernel // 2, bias=False),
                      nn.BatchNorm1d(conv_channels), nn.ReLU(inplace=True), nn.MaxPool1d(2)]
            c = conv_channels
        self.front = nn.Sequential(*front)
        cell = {"gru": nn.GRU, "lstm": nn.LSTM}[rnn]
        self.rnn = cell(c, hidden, num_layers, batch_first=True,
                        bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0)
        self.hidden, self.directions = hidden, 2 if bidirectional else 1
        pooled = 2 * self.directions * hidden
        if side_features:
            self.register_buffer("side_mean", torch.zeros(side_features))
            self.register_buffer("side_std", torch.ones(side_features))
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(pooled + side_features, hidden),
                                      nn.ReLU(inplace=True), nn.Linear(hidden, out_features))
        else:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(pooled, out_features))

    def _standardise(self, x):
        if self.normalize == "sample":
            mean = x.mean(dim=-1, keepdim=True)
            std = x.std(dim=-1, keepdim=True).clamp(min=1e-3) if x.shape[-1] > 1 else torch.ones_like(mean)
            return (x - mean) / std, mean, std
        if self.normalize == "dataset":
            return (x - self.mean) / self.std, self.mean.expand(x.shape[0], -1, -1), self.std.expand(x.shape[0], -1, -1)
        return x, None, None

    def forward(self, x):
        features = []
        if self.side_features:
            features = [(x[:, 0, -self.side_features:] - self.side_mean) / self.side_std]
            x = x[..., :-self.side_features]
        z, mean, std = self._standardise(x)
        seq, _ = self.rnn(self.front(z).transpose(1, 2))
        last = seq[:, -1, :self.hidden]
        if self.directions == 2:  # the backward direction ends at the first time step
            last = torch.cat([last, seq[:, 0, self.hidden:]], dim=1)
        out = self.head(torch.cat([last, seq.mean(dim=1), *features], dim=1))
        if self.target_channel is not None and mean is not None:
            c = self.target_channel
            out = out * std[:, c] + mean[:, c]
        return out


class Ensemble(nn.Module):
    """Members trained apart, from different seeds, whose predictions are averaged (deep ensembles,
    Lakshminarayanan et al. 2017). Classifiers (``average="probabilities"``) return the log of the mean
    class probability, so that a softmax of the output is that mean; forecasters (``"values"``) the mean
    output."""

    AVERAGES = ("probabilities", "values")

    def __init__(self, members, average: str = "probabilities"):
        super().__init__()
        if average not in self.AVERAGES:
            raise ValueError(f"average must be one of {self.AVERAGES}, got {average!r}")
        self.members = nn.ModuleList(members)
        self.average = average

    def forward(self, x):
        outs = torch.stack([m(x) for m in self.members])
        if self.average == "values":
            return outs.mean(dim=0)
        return torch.logsumexp(outs.log_softmax(dim=-1), dim=0) - math.log(len(self.members))

    def embed(self, x):
        return torch.cat([m.embed(x) for m in self.members], dim=1)


def members(network: nn.Module) -> list:
    """The networks trained one by one: an ensemble's members, or the network itself."""
    return list(network.members) if isinstance(network, Ensemble) else [network]


def build(cls, layers: str, *args, **kwargs) -> nn.Module:
    """``cls(*args, **kwargs)`` with medkern's layers swapped in (``layers="medkern"``) or torch's."""
    if layers not in LAYERS:
        raise ValueError(f"layers must be one of {LAYERS}, got {layers!r}")
    net = cls(*args, **kwargs)
    if layers == "medkern":
        import medkern
        medkern.patch(net)
    return net
