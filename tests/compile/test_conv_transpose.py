"""Transposed convolutions in compiled inference graphs (FusedConvTranspose): one forward convolution per stride
phase, with the BatchNorm and activation after it taken over. Compiled networks match float64 eager over
awkward geometries (phases of unequal sizes, phases no tap reaches, output padding, stride 1 and 3, odd maps),
the nodes are fused, parameters changed after compiling are used, and what the phases cannot run (or would run
slower than torch) stays on torch."""
import copy

import pytest
import torch
from torch import nn

import medkern
from medkern.compile import backend as backend_module
from medkern.compile.fused_conv_transpose import axis_phases, output_size


def _max_rel(got, want) -> float:
    return ((got.double() - want.double()).abs().max() / want.double().abs().max()).item()


@pytest.fixture
def fused_counts(monkeypatch):
    """How many transposed convolutions each inference graph compiled from now on fused."""
    counts = []
    original = backend_module.fuse_transposed_convolutions

    def counting(gm):
        counts.append(original(gm))
        return counts[-1]
    monkeypatch.setattr(backend_module, "fuse_transposed_convolutions", counting)
    return counts


def _network(cin, cout, kernel, stride, padding, output_padding, norm, activation, bias, seed):
    torch.manual_seed(seed)
    layers = [nn.ConvTranspose2d(cin, cout, kernel, stride, padding, output_padding, bias=bias)]
    if norm:
        bn = nn.BatchNorm2d(cout)
        with torch.no_grad():  # statistics and affine terms far from the identity
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.3, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_()
        layers.append(bn)
    layers += {"none": [], "relu": [nn.ReLU()], "leaky_relu": [nn.LeakyReLU(0.2)]}[activation]
    return nn.Sequential(*layers, nn.Tanh()).eval()  # tanh: something after it that stays on torch


CASES = {
    # name: (cin, cout, kernel, stride, padding, output_padding, input size, BatchNorm, activation, bias)
    "dcgan_k4s2": (32, 16, 4, 2, 1, 0, (7, 8), True, "relu", False),
    "k3s2_output_padding": (16, 24, 3, 2, 1, 1, (5, 6), True, "leaky_relu", True),
    "k2s2_no_overlap": (16, 24, 2, 2, 0, 0, (6, 5), False, "none", True),
    "k5s3_unequal_phases": (16, 16, 5, 3, 2, 2, (4, 7), True, "relu", True),
    "k1s2_phases_without_taps": (16, 16, 1, 2, 0, 1, (5, 5), False, "relu", True),
    "stride1_is_a_convolution": (16, 32, 3, 1, 1, 0, (9, 4), False, "none", True),
    "stride1_cropping_padding": (16, 16, 3, 1, 2, 0, (9, 9), True, "none", True),
    "wide_channels_short_rows": (64, 48, 4, 2, 1, 0, (3, 2), True, "relu", False),
}


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_transposed_convolution_matches_float64_eager(name, batch, fused_counts):
    torch._dynamo.reset()
    cin, cout, k, s, p, op, size, norm, activation, bias = CASES[name]
    net = _network(cin, cout, k, s, p, op, norm, activation, bias, seed=batch)
    x = torch.randn(batch, cin, *size, generator=torch.Generator().manual_seed(len(name)))
    want = copy.deepcopy(net).double()(x.double())
    got = medkern.optimize(net)(x)
    assert got.shape == want.shape
    assert _max_rel(got, want) <= 1e-5
    assert sum(fused_counts) == 1


def test_float64_network_matches_to_float64_precision():
    torch._dynamo.reset()
    net = _network(16, 8, 4, 2, 1, 0, True, "relu", True, seed=0).double()
    x = torch.randn(2, 16, 6, 7, dtype=torch.float64)
    assert _max_rel(medkern.optimize(net)(x), copy.deepcopy(net)(x)) <= 1e-10


def test_parameters_changed_after_compiling_give_the_new_answer():
    torch._dynamo.reset()
    net = _network(16, 8, 4, 2, 1, 0, True, "relu", True, seed=1)
    x = torch.randn(2, 16, 7, 7)
    compiled = medkern.optimize(net)
    compiled(x)
    with torch.no_grad():
        net[0].weight.mul_(-1.3)   # in place: the version counter
        net[1].running_mean.add_(0.5)
    assert _max_rel(compiled(x), copy.deepcopy(net).double()(x.double())) <= 1e-5


def test_generator_of_the_gan_model_fuses_its_transposed_convolutions(fused_counts):
    from medkern.models.gan_networks import Generator
    torch._dynamo.reset()
    net = Generator(1, (28, 28), num_classes=2, latent_dim=16, width=16).eval()
    z, labels = torch.randn(3, 16), torch.tensor([0, 1, 1])
    want = copy.deepcopy(net).double()(z.double(), labels)
    assert _max_rel(medkern.optimize(net)(z, labels), want) <= 1e-5
    assert sum(fused_counts) == sum(isinstance(m, nn.ConvTranspose2d) for m in net.modules())


def test_large_calls_stay_on_torch(fused_counts):
    """Phases of more positions than the packed paths take (7x7 at batch 32) would run on the unpacked GEMMs, slower
    than torch's transposed convolution: such a call is left to torch, the same layer at batch 1 fused."""
    net = _network(32, 16, 4, 2, 1, 0, True, "relu", False, seed=2)
    for batch, fused in ((32, 0), (1, 1)):
        torch._dynamo.reset()
        fused_counts.clear()
        x = torch.randn(batch, 32, 7, 7)
        assert _max_rel(medkern.optimize(net)(x), copy.deepcopy(net).double()(x.double())) <= 1e-5
        assert sum(fused_counts) == fused, batch


@pytest.mark.parametrize("geometry", [dict(groups=2), dict(dilation=2)], ids=["groups", "dilation"])
def test_what_the_phases_do_not_run_stays_on_torch(geometry, fused_counts):
    torch._dynamo.reset()
    net = nn.Sequential(nn.ConvTranspose2d(16, 16, 3, 2, 1, **geometry), nn.ReLU()).eval()
    x = torch.randn(2, 16, 5, 5)
    assert _max_rel(medkern.optimize(net)(x), copy.deepcopy(net).double()(x.double())) <= 1e-5
    assert sum(fused_counts) == 0


@pytest.mark.parametrize("size, kernel, stride, padding, output_padding",
                         [(7, 4, 2, 1, 0), (5, 3, 2, 1, 1), (4, 5, 3, 2, 2), (5, 1, 2, 0, 1), (9, 3, 1, 2, 0),
                          (3, 2, 4, 0, 3), (6, 7, 2, 3, 1)])
def test_phases_cover_every_output_once(size, kernel, stride, padding, output_padding):
    """The phases' outputs (first, first + stride, ...) partition the output positions, and each reads exactly the
    taps that reach it: checked against the definition, position by position."""
    out = output_size(size, kernel, stride, padding, output_padding)
    phases = axis_phases(size, out, kernel, stride, padding)
    covered = sorted(ph.first + stride * u for ph in phases for u in range(ph.count))
    assert covered == list(range(out))
    for phi, ph in enumerate(phases):
        for u in range(ph.count):
            o = ph.first + stride * u
            # taps r with o = i * stride - padding + r for some input position i (in or out of the input)
            reaching = [r for r in range(kernel) if (o + padding - r) % stride == 0]
            assert reaching == list(range(phi, kernel, stride))
            # the phase's convolution reads input u + m - pad for sub-tap m = taps - 1 - j (tap phi + j*stride)
            for j, r in enumerate(reaching):
                assert u + (ph.taps - 1 - j) - ph.pad == (o + padding - r) // stride
