"""Random networks for the compiled-graph tests: convolutions of random geometry (groups incl. depthwise,
dilation, stride), BatchNorm with non-trivial statistics, residual adds, concatenations, pre-activation
blocks, activations medkern fuses and ones it does not, pooling, a linear head."""
import random

import torch
from torch import nn


def randomise_batchnorm(bn, g: torch.Generator) -> None:
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.5)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) * 2 + 0.2)
        if bn.affine:
            bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
            bn.bias.copy_(torch.randn(bn.num_features, generator=g) * 0.3)


# By spatial rank: the convolution, BatchNorm, max and average pooling, adaptive average pooling.
LAYERS = {1: (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d),
          2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d),
          3: (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.AvgPool3d, nn.AdaptiveAvgPool3d)}

ACTIVATIONS = [nn.ReLU, lambda: nn.ReLU(inplace=True), lambda: nn.LeakyReLU(0.1), nn.SiLU, nn.GELU, nn.Identity]


class ConvBN(nn.Module):
    def __init__(self, rng, c, k, dims, stride=1, activation=True):
        super().__init__()
        conv, bn = LAYERS[dims][:2]
        groups = rng.choice([1, 1, 1, c]) if c == k else 1
        size, dilation = rng.choice([1, 3, 3, 5]), rng.choice([1, 1, 2])
        self.conv = conv(c, k, size, stride=stride, padding=dilation * (size - 1) // 2, dilation=dilation,
                         groups=groups, bias=rng.random() < 0.4)
        self.bn = bn(k, eps=rng.choice([1e-5, 1e-3]), affine=rng.random() < 0.85)
        self.act = rng.choice(ACTIVATIONS)() if activation else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Residual(nn.Module):
    def __init__(self, rng, c, k, dims, stride):
        super().__init__()
        self.a = ConvBN(rng, c, k, dims, stride)
        self.b = ConvBN(rng, k, k, dims, 1, activation=False)
        self.skip = ConvBN(rng, c, k, dims, stride, activation=False) if (c != k or stride != 1) else nn.Identity()
        self.act = rng.choice(ACTIVATIONS)()

    def forward(self, x):
        return self.act(self.b(self.a(x)) + self.skip(x))


class Dense(nn.Module):
    """DenseNet's layer: BatchNorm, ReLU, then the convolution, on the input; concatenated to it."""
    def __init__(self, rng, c, growth, dims):
        super().__init__()
        self.pre = nn.Sequential(LAYERS[dims][1](c), nn.ReLU())
        self.body = ConvBN(rng, c, growth, dims)

    def forward(self, x):
        return torch.cat([x, self.body(self.pre(x))], 1)


class RandomNetwork(nn.Module):
    def __init__(self, seed: int, dims: int = 2, channels: int = 3):
        super().__init__()
        rng, g = random.Random(seed), torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        c = rng.choice([8, 12, 16])
        layers = [ConvBN(rng, channels, c, dims)]
        for _ in range(rng.randint(2, 5)):
            kind = rng.choice(["residual", "dense", "conv", "pool"])
            if kind == "residual":
                k = rng.choice([c, 2 * c])
                layers.append(Residual(rng, c, k, dims, rng.choice([1, 2])))
                c = k
            elif kind == "dense":
                growth = rng.choice([4, 8])
                layers.append(Dense(rng, c, growth, dims))
                c += growth
            elif kind == "conv":
                k = rng.choice([c, c + 4])
                layers.append(ConvBN(rng, c, k, dims, rng.choice([1, 2])))
                c = k
            else:
                layers.append(rng.choice(LAYERS[dims][2:4])(2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.pool = LAYERS[dims][4](1)
        self.head = nn.Linear(c, 3)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                randomise_batchnorm(m, g)

    def forward(self, x):
        return self.head(self.pool(self.features(x)).flatten(1))
