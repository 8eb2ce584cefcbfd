"""medkern.patch folds an nn.Sequential's Conv2d -> BatchNorm2d (-> ReLU/LeakyReLU) for inference: eval outputs
and gradients equal the unfused network's on random networks, training is unchanged (running statistics
included), a parameter or statistic changed after a call gives the new answer, and the module tree and
state_dict stay torch's."""
import copy
import random

import pytest
import torch

import medkern
from medkern.nn.batchnorm import FoldedBatchNorm1d, FoldedBatchNorm2d
from conftest import rel_err

ACTIVATIONS = [None, lambda: torch.nn.ReLU(inplace=True), lambda: torch.nn.LeakyReLU(0.2), lambda: torch.nn.SiLU()]


def _randomise(bn: torch.nn.BatchNorm2d, g: torch.Generator) -> None:
    """Statistics and affine parameters far from the defaults, so a fold that ignores one shows."""
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) * 3 + 0.1)
        if bn.affine:
            bn.weight.copy_(torch.randn(bn.num_features, generator=g))
            bn.bias.copy_(torch.randn(bn.num_features, generator=g))


def random_network(seed: int, dtype=torch.float64) -> torch.nn.Sequential:
    """Conv (random kernel, stride, dilation, groups incl. depthwise, bias or not) -> BatchNorm2d (affine or
    not, random eps) -> an activation or none, a few times, with a pooling layer between."""
    rng, g = random.Random(seed), torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    layers, c = [], 3
    for _ in range(rng.randint(2, 4)):
        groups = rng.choice([1, 1, c]) if c > 1 else 1
        k = groups * rng.randint(1, 3) if groups > 1 else rng.randint(2, 9)
        size, dilation = rng.choice([1, 3, 5]), rng.choice([1, 2])
        layers.append(torch.nn.Conv2d(c, k, size, stride=rng.choice([1, 2]),
                                      padding=dilation * (size - 1) // 2 + rng.randint(0, 1), dilation=dilation,
                                      groups=groups, bias=rng.random() < 0.5))
        bn = torch.nn.BatchNorm2d(k, eps=rng.choice([1e-5, 1e-3]), affine=rng.random() < 0.8)
        _randomise(bn, g)
        layers.append(bn)
        act = rng.choice(ACTIVATIONS)
        if act is not None:
            layers.append(act())
        if rng.random() < 0.3:
            layers.append(torch.nn.MaxPool2d(2, ceil_mode=True))
        c = k
    return torch.nn.Sequential(*layers).to(dtype)


def _patched(net):
    return medkern.patch(copy.deepcopy(net))


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_eval_output_matches_the_unfused_network(seed, dtype):
    net = random_network(seed, dtype).eval()
    fused = _patched(net).eval()
    assert any(type(m) is FoldedBatchNorm2d for m in fused)
    x = torch.randn(2, 3, 23, 21, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want, got = net(x), fused(x)
        again = fused(x)  # the cached folded weights
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert rel_err(got, want) < tol and torch.equal(got, again)


@pytest.mark.parametrize("seed", range(4))
def test_eval_gradients_flow_through_the_fold(seed):
    """With gradients wanted in eval mode, the fold is differentiable: the input's, the weights' and the
    BatchNorm's affine gradients equal the unfused network's."""
    net = random_network(seed).eval()
    fused = _patched(net).eval()
    x = torch.randn(2, 3, 17, 19, dtype=torch.float64, requires_grad=True)
    grads = []
    for m in (net, fused):
        params = [p for p in m.parameters()]
        grads.append(torch.autograd.grad(m(x).square().sum(), [x, *params]))
    for a, b in zip(*grads):
        assert rel_err(b, a) < 1e-10


@pytest.mark.parametrize("seed", range(4))
def test_training_is_unchanged_running_statistics_included(seed):
    net = random_network(seed).train()
    fused = _patched(net).train()
    for step in range(2):
        x = torch.randn(4, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(step))
        want, got = net(x), fused(x)
        assert rel_err(got, want) < 1e-10
        r = torch.randn(want.shape, dtype=torch.float64)  # a plain sum of normalised outputs has ~0 gradient
        ga = torch.autograd.grad((want * r).sum(), list(net.parameters()))
        gb = torch.autograd.grad((got * r).sum(), list(fused.parameters()))
        # A conv bias before a training-mode BatchNorm has a zero gradient, computed as rounding noise: the
        # tolerance is scaled by the largest gradient, not by each one.
        scale = max(a.abs().max().item() for a in ga)
        assert all(torch.allclose(b, a, rtol=1e-9, atol=1e-12 * scale) for a, b in zip(ga, gb))
    for a, b in zip(net.buffers(), fused.buffers()):  # medkern's conv rounds differently from torch's
        assert torch.equal(a, b) if not a.is_floating_point() else rel_err(b, a) < 1e-12
    # and eval after training uses the updated statistics
    net.eval(), fused.eval()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(fused(x), net(x)) < 1e-10


def test_a_change_after_the_first_call_gives_the_new_answer():
    net = random_network(1).eval()
    fused = _patched(net).eval()
    x = torch.randn(1, 3, 20, 20, dtype=torch.float64)
    with torch.no_grad():
        fused(x)
        convs = [i for i, m in enumerate(net) if isinstance(m, torch.nn.Conv2d)]
        bn_index = convs[0] + 1
        for m in (net, fused):  # in place: the version counters move, the tensors stay
            m[convs[0]].weight.mul_(1.5)
            m[bn_index].running_var.add_(0.7)
            m[bn_index].running_mean.sub_(0.2)
        assert rel_err(fused(x), net(x)) < 1e-10
        state = {k: v + 0.1 for k, v in net.state_dict().items() if v.is_floating_point()}
        net.load_state_dict(state, strict=False)
        fused.load_state_dict(state, strict=False)
        assert rel_err(fused(x), net(x)) < 1e-10


def test_module_tree_and_state_dict_stay_torchs():
    net = random_network(2).eval()
    fused = _patched(net)
    assert list(fused.state_dict()) == list(net.state_dict())
    torch.nn.Sequential(*copy.deepcopy(list(net))).load_state_dict(fused.state_dict())
    assert [n for n, _ in fused.named_parameters()] == [n for n, _ in net.named_parameters()]
    clone = copy.deepcopy(fused).eval()
    x = torch.randn(1, 3, 18, 18, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(clone(x), net(x)) < 1e-10


def test_not_folded_where_the_output_could_change():
    conv, bn = torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)
    shared = torch.nn.Sequential(conv, bn, torch.nn.ReLU())
    twice = torch.nn.Sequential(shared, torch.nn.Sequential(conv))  # the conv is used elsewhere too
    medkern.patch(twice)
    # Not folded; swapped for medkern's BatchNorm, which takes the ReLU (it is used once).
    assert type(bn) is medkern.nn.BatchNorm2d and bn.fused_activation == "relu"
    assert "folded_batchnorm" not in conv.__dict__
    hooked = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    hooked[1].register_forward_hook(lambda *a: None)
    medkern.patch(hooked)
    assert type(hooked[1]) is medkern.nn.BatchNorm2d
    no_stats = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4, track_running_stats=False))
    reference = copy.deepcopy(no_stats).eval()
    medkern.patch(no_stats).eval()
    assert type(no_stats[1]) is medkern.nn.BatchNorm2d  # batch statistics even in eval: nothing to fold
    x = torch.randn(2, 3, 9, 9)
    assert rel_err(no_stats(x), reference(x)) < 1e-5


def test_inference_mode_then_an_input_gradient():
    """Folded weights first made under inference_mode still serve a later call whose input wants a gradient
    (a saliency map through a served model)."""
    net = random_network(3).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    fused = _patched(net).eval()
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    with torch.inference_mode():
        fused(x)
    x.requires_grad_(True)
    (g,) = torch.autograd.grad(fused(x).sum(), x)
    (want,) = torch.autograd.grad(net(x).sum(), x)
    assert rel_err(g, want) < 1e-10


def test_the_projects_networks_in_eval():
    from medkern.models.networks import ResNet

    torch.manual_seed(0)
    net = ResNet(3, 2, width=8, depth=2).double()
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            _randomise(m, g)
    net.eval()
    fused = _patched(net).eval()
    assert sum(type(m) is FoldedBatchNorm2d for m in fused.modules()) >= 4
    x = torch.rand(3, 3, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(fused(x), net(x)) < 1e-10
    from medkern.models.networks import RecurrentNet

    seq = RecurrentNet(1, 2).double()
    for m in seq.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            _randomise(m, g)
    seq.eval()
    fused_seq = _patched(seq).eval()
    assert any(type(m) is FoldedBatchNorm1d for m in fused_seq.modules())
    x = torch.randn(2, 1, 96, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(fused_seq(x), seq(x)) < 1e-10


def test_a_shared_activation_is_fused_in_each_slot():
    """One ReLU instance reused across blocks (a common idiom) is stateless: each slot can be fused."""
    relu = torch.nn.ReLU()
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), relu,
                              torch.nn.Conv2d(4, 4, 3), relu).double().eval()
    _randomise(net[1], torch.Generator().manual_seed(0))
    fused = medkern.patch(copy.deepcopy(net)).eval()
    assert [type(m).__name__ for m in fused] == ["Conv2d", "FoldedBatchNorm2d", "Identity", "Conv2d", "Identity"]
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(fused(x), net(x)) < 1e-10


@pytest.mark.parametrize("seed", range(4))
def test_conv1d_batchnorm1d_fold_in_eval_and_training(seed):
    """The 1-d form: Conv1d -> BatchNorm1d (-> activation), as the project's sequence models stack them."""
    rng, g = random.Random(seed), torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    layers, c = [], 2
    for _ in range(3):
        k, size = rng.randint(2, 7), rng.choice([1, 3, 7])
        layers += [torch.nn.Conv1d(c, k, size, stride=rng.choice([1, 2]), padding=size // 2, bias=rng.random() < 0.5),
                   torch.nn.BatchNorm1d(k, affine=rng.random() < 0.8)]
        _randomise(layers[-1], g)
        act = rng.choice(ACTIVATIONS)
        layers += [act()] if act is not None else []
        c = k
    net = torch.nn.Sequential(*layers, torch.nn.MaxPool1d(2)).double()
    fused = _patched(net)
    assert sum(type(m) is FoldedBatchNorm1d for m in fused) == 3
    x = torch.randn(3, 2, 50, dtype=torch.float64, generator=g)
    for mode in ("eval", "train"):
        getattr(net, mode)(), getattr(fused, mode)()
        with torch.no_grad():
            assert rel_err(fused(x), net(x)) < 1e-10, mode
