"""Inference of a patched model (no gradient wanted, native CPU kernels): each convolution runs as a compiled
graph's node does, weights packed once for the planner's path (the direct kernel on small maps), BatchNorm folded
and activation fused as ``medkern.patch`` set them. It matches float64 torch, follows weights changed in place,
and is not taken where a gradient is wanted, another backend is selected, or the padding is a string."""
import copy

import pytest
import torch
from torch import nn

import medkern

pytestmark = pytest.mark.skipif(medkern._native._C is None, reason="the native CPU module is not built")

LAYERS = {1: (nn.Conv1d, nn.BatchNorm1d), 2: (nn.Conv2d, nn.BatchNorm2d), 3: (nn.Conv3d, nn.BatchNorm3d)}


def _max_rel(got, want) -> float:
    return ((got.double() - want.double()).abs().max() / want.double().abs().max()).item()


def _network(dims: int, seed: int, padding_mode: str = "zeros") -> nn.Module:
    """Conv-BN-ReLU, a strided conv with LeakyReLU, a grouped conv: what patch folds and fuses, at 16+ channels
    (where the planner takes the direct kernel on small maps)."""
    torch.manual_seed(seed)
    conv, norm = LAYERS[dims]
    net = nn.Sequential(conv(3, 16, 3, padding=1, padding_mode=padding_mode), norm(16), nn.ReLU(),
                        conv(16, 32, 3, stride=2, padding=1), nn.LeakyReLU(0.1),
                        conv(32, 32, 3, padding=2, dilation=2, groups=2), norm(32), nn.ReLU())
    for m in net.modules():
        if isinstance(m, norm):
            with torch.no_grad():
                m.running_mean.normal_()
                m.running_var.uniform_(0.3, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
    return net.eval()


def _nodes(model) -> int:
    return sum("_packed_inference" in m.__dict__ for m in model.modules())


SIZES = {1: (41,), 2: (13, 11), 3: (7, 6, 5)}


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_patched_inference_matches_float64_torch(dims, batch, padding_mode):
    net = _network(dims, seed=dims + batch, padding_mode=padding_mode)
    patched = medkern.patch(copy.deepcopy(net))
    x = torch.randn(batch, 3, *SIZES[dims])
    with torch.no_grad():
        got = patched(x)
    assert _max_rel(got, copy.deepcopy(net).double()(x.double())) <= 1e-5
    assert _nodes(patched) == 3


def test_inference_mode_and_float64():
    net = _network(2, seed=0).double()
    patched = medkern.patch(copy.deepcopy(net))
    x = torch.randn(1, 3, 13, 11, dtype=torch.float64)
    with torch.inference_mode():
        assert _max_rel(patched(x), net(x)) <= 1e-10


def test_weights_changed_in_place_after_a_call_give_the_new_answer():
    net = _network(2, seed=1)
    patched = medkern.patch(copy.deepcopy(net))
    x = torch.randn(1, 3, 13, 11)
    with torch.no_grad():
        patched(x)
        for layer in (patched[0], patched[3]):
            layer.weight.mul_(-1.5)
        patched[1].running_var.add_(0.5)
        for layer in (net[0], net[3]):
            layer.weight.mul_(-1.5)
        net[1].running_var.add_(0.5)
        assert _max_rel(patched(x), copy.deepcopy(net).double()(x.double())) <= 1e-5


def test_not_taken_where_a_gradient_is_wanted_or_another_backend_runs():
    net = _network(2, seed=2)
    patched = medkern.patch(copy.deepcopy(net))
    x = torch.randn(1, 3, 13, 11, requires_grad=True)
    y = patched(x)
    assert y.requires_grad and _nodes(patched) == 0
    y.sum().backward()
    assert x.grad is not None
    with torch.no_grad(), medkern.backends.use("reference"):
        assert _max_rel(patched(x), copy.deepcopy(net).double()(x.double())) <= 1e-5
    assert _nodes(patched) == 0


def test_string_padding_runs_on_the_op():
    conv = medkern.patch(nn.Sequential(nn.Conv2d(16, 16, 4, padding="same"))).eval()
    x = torch.randn(1, 16, 9, 9)
    with torch.no_grad():
        got = conv(x)
    assert _nodes(conv) == 0
    want = nn.functional.conv2d(x.double(), conv[0].weight.double(), conv[0].bias.double(), padding="same")
    assert _max_rel(got, want) <= 1e-5
