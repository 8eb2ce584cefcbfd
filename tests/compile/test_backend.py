"""torch.compile(backend="medkern") and medkern.optimize: compiled inference matches float64 eager on random
networks (1-d and 2-d, BatchNorm with real statistics, residuals, concatenations, depthwise and dilated
convolutions, activations medkern does not fuse), fuses what it should, answers from the current parameters
after they change, serves new batch sizes, runs training graphs correctly, and is found by name after install."""
import copy
import subprocess
import sys

import pytest
import torch

import medkern
from medkern.compile import backend as backend_module
from medkern.compile.fused_conv import FusedConv

from .networks import RandomNetwork


def _max_rel(got, want) -> float:
    return ((got.double() - want.double()).abs().max() / want.double().abs().max()).item()


def _count_calls(monkeypatch, name: str) -> list[int]:
    """The answers of the backend's graph pass ``name`` from now on, one per graph compiled."""
    counts = []
    original = getattr(backend_module, name)

    def counting(gm):
        counts.append(original(gm))
        return counts[-1]
    monkeypatch.setattr(backend_module, name, counting)
    return counts


@pytest.fixture
def fused_counts(monkeypatch):
    """How many convolutions each inference graph compiled from now on fused."""
    return _count_calls(monkeypatch, "fuse_convolutions")


def _input(dims, n=2, size=17, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, *(size,) * dims, generator=g)


def _convolutions(model) -> int:
    return sum(isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)) for m in model.modules())


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(8))
def test_compiled_random_network_matches_float64_eager(seed, dims, fused_counts):
    torch._dynamo.reset()
    net = RandomNetwork(seed, dims).eval()
    x = _input(dims, size={1: 33, 2: 17, 3: 9}[dims], seed=seed)
    want = copy.deepcopy(net).double()(x.double())
    got = medkern.optimize(net)(x)
    assert got.dtype == torch.float32
    assert _max_rel(got, want) <= 1e-4
    assert sum(fused_counts) == _convolutions(net)


def test_float64_network_matches_to_float64_precision():
    torch._dynamo.reset()
    net = RandomNetwork(3).double().eval()
    x = _input(2).double()
    want = copy.deepcopy(net)(x)
    assert _max_rel(medkern.optimize(net)(x), want) <= 1e-10


def test_torch_compile_finds_the_backend_by_name(fused_counts):
    torch._dynamo.reset()
    net = RandomNetwork(1).eval()
    x = _input(2)
    want = net(x)
    with torch.no_grad():
        got = torch.compile(net, backend="medkern")(x)
    assert _max_rel(got, want) <= 1e-4
    assert sum(fused_counts) == _convolutions(net)


def test_backend_is_registered_for_a_process_that_never_imports_medkern():
    code = ("import torch\n"
            "assert 'medkern' in torch._dynamo.list_backends(), torch._dynamo.list_backends()\n"
            "net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU()).eval()\n"
            "x = torch.randn(1, 2, 8, 8)\n"
            "with torch.no_grad():\n"
            "    y = torch.compile(net, backend='medkern', fullgraph=True)(x)\n"
            "    assert torch.allclose(y, net(x), atol=1e-5)\n"
            "import sys; assert 'medkern.compile' in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_parameters_changed_after_compiling_give_the_new_answer():
    torch._dynamo.reset()
    net = RandomNetwork(5).eval()
    x = _input(2)
    compiled = medkern.optimize(net)
    compiled(x)
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        conv.weight.mul_(1.5)                        # in place: version counter
        bn.running_var.add_(0.7)                     # a statistic
    assert _max_rel(compiled(x), copy.deepcopy(net).double()(x.double())) <= 1e-4
    state = copy.deepcopy(net.state_dict())
    for value in state.values():
        if value.is_floating_point():
            value.mul_(0.9)
    net.load_state_dict(state)                       # copy_ into every tensor
    assert _max_rel(compiled(x), copy.deepcopy(net).double()(x.double())) <= 1e-4


def test_new_batch_sizes_give_right_answers():
    torch._dynamo.reset()
    net = RandomNetwork(2).eval()
    compiled = medkern.optimize(net)
    reference = copy.deepcopy(net).double()
    for n in (1, 3, 5, 1, 8):
        x = _input(2, n=n, seed=n)
        assert _max_rel(compiled(x), reference(x.double())) <= 1e-4, n


@pytest.fixture
def training_counts(monkeypatch):
    """How many nodes each training graph (forward, then backward) compiled from now on runs on medkern."""
    return _count_calls(monkeypatch, "use_medkern_kernels")


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_training_graph_matches_float64_eager(seed, dims, training_counts):
    """A training step through the backend: the loss, every gradient (judged as one vector: a bias before a
    BatchNorm has a gradient of zero up to rounding) and the running statistics match float64 eager, and the
    2-d and 3-d convolutions and batch normalisations ran on medkern's kernels in both graphs."""
    torch._dynamo.reset()
    net = RandomNetwork(seed, dims).train()
    reference = copy.deepcopy(net).double()
    compiled = torch.compile(net, backend="medkern")
    x = _input(dims, n=4, size={1: 33, 2: 17, 3: 9}[dims], seed=seed)
    loss = compiled(x).square().mean()
    loss.backward()
    want = reference(x.double()).square().mean()
    want.backward()
    assert _max_rel(loss, want) < 1e-4
    grads = torch.cat([p.grad.flatten() for p in net.parameters()])
    assert _max_rel(grads, torch.cat([p.grad.flatten() for p in reference.parameters()])) < 1e-4
    for (name, b), c in zip(net.named_buffers(), reference.buffers()):
        assert _max_rel(b, c) < 1e-4 if b.is_floating_point() else torch.equal(b, c), name
    if dims > 1:
        assert len(training_counts) == 2 and min(training_counts) >= _convolutions(net)


def test_optimize_refuses_what_is_not_a_module():
    with pytest.raises(TypeError, match="nn.Module"):
        medkern.optimize(lambda x: x)


@pytest.mark.parametrize("path", ["", "direct", "gemm_weight_panels", "winograd_f2x3_panels", "gemm"])
@pytest.mark.parametrize("prologue", ["none", "bn", "bn_relu"])
@pytest.mark.parametrize("activation", ["none", "relu", "leaky_relu"])
@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
def test_fused_conv_node_matches_float64(activation, residual, prologue, path):
    """Every epilogue and prologue on the paths that fuse them (direct and gemm_weight_panels read the prologue
    as they pad or gather; the others get it one pass ahead, and the residual one pass after where they do not take one)."""
    from medkern.compile.fused_conv import ConvEpilogue
    g = torch.Generator().manual_seed(7)
    groups = 1 if path == "winograd_f2x3_panels" else 2
    x, w, b = torch.randn(2, 6, 9, 11, generator=g), torch.randn(8, 6 // groups, 3, 3, generator=g), torch.randn(8, generator=g)
    gamma, beta = torch.rand(8, generator=g) + 0.5, torch.randn(8, generator=g)
    mean, var = torch.randn(8, generator=g), torch.rand(8, generator=g) + 0.2
    in_bn = [torch.rand(6, generator=g) + 0.5, torch.randn(6, generator=g), torch.randn(6, generator=g),
             torch.rand(6, generator=g) + 0.2] if prologue != "none" else [None] * 4
    r = torch.randn(2, 8, 9, 11, generator=g) if residual else None
    node = FusedConv([1, 1], [1, 1], [1, 1], groups,
                     ConvEpilogue(1e-3, activation, 0.2, 1e-5 if prologue != "none" else None, prologue == "bn_relu"))
    with medkern.ops.force_conv_path(path):
        got = node(x, w, b, gamma, beta, mean, var, r, *in_bn)
    d = lambda t: None if t is None else t.double()  # noqa: E731
    xin = d(x)
    if prologue != "none":
        xin = torch.nn.functional.batch_norm(xin, d(in_bn[2]), d(in_bn[3]), d(in_bn[0]), d(in_bn[1]), False, 0.0, 1e-5)
        xin = xin.relu() if prologue == "bn_relu" else xin
    want = torch.nn.functional.conv2d(xin, d(w), d(b), 1, 1, 1, groups)
    want = torch.nn.functional.batch_norm(want, d(mean), d(var), d(gamma), d(beta), False, 0.0, 1e-3)
    want = want if r is None else want + d(r)
    want = {"none": want, "relu": want.relu(), "leaky_relu": torch.nn.functional.leaky_relu(want, 0.2)}[activation]
    assert _max_rel(got, want) <= 1e-5


@pytest.mark.parametrize("path", ["direct", "winograd3d_f2x3", "gemm"])
@pytest.mark.parametrize("prologue", ["none", "bn_relu"])
@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
def test_fused_conv_node_of_a_volume_matches_float64(residual, prologue, path):
    """The volume node: BatchNorm folded, input prologue (read by direct as it pads, else one pass ahead), residual
    and activation (in direct's epilogue, else after)."""
    from medkern.compile.fused_conv import ConvEpilogue
    F = torch.nn.functional
    g = torch.Generator().manual_seed(8)
    x, w, b = torch.randn(2, 16, 9, 10, 11, generator=g), torch.randn(16, 16, 3, 3, 3, generator=g) * 0.1, None
    gamma, beta = torch.rand(16, generator=g) + 0.5, torch.randn(16, generator=g)
    mean, var = torch.randn(16, generator=g), torch.rand(16, generator=g) + 0.2
    in_bn = [torch.rand(16, generator=g) + 0.5, torch.randn(16, generator=g), torch.randn(16, generator=g),
             torch.rand(16, generator=g) + 0.2] if prologue != "none" else [None] * 4
    r = torch.randn(2, 16, 9, 10, 11, generator=g) if residual else None
    node = FusedConv([1, 1, 1], [1, 1, 1], [1, 1, 1], 1,
                     ConvEpilogue(1e-3, "relu", 0.0, 1e-5 if prologue != "none" else None, prologue == "bn_relu"))
    with medkern.ops.force_conv_path(path):
        got = node(x, w, b, gamma, beta, mean, var, r, *in_bn)
    d = lambda t: None if t is None else t.double()  # noqa: E731
    xin = d(x)
    if prologue != "none":
        xin = F.batch_norm(xin, d(in_bn[2]), d(in_bn[3]), d(in_bn[0]), d(in_bn[1]), False, 0.0, 1e-5).relu()
    want = F.batch_norm(F.conv3d(xin, d(w), None, 1, 1), d(mean), d(var), d(gamma), d(beta), False, 0.0, 1e-3)
    want = (want if r is None else want + d(r)).relu()
    assert _max_rel(got, want) <= 1e-5


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
def test_recurrent_networks_compile_whole_without_private_flags(rnn, monkeypatch):
    """fullgraph=True: an error, not a graph break, if Dynamo refused the recurrent layer; the process's Dynamo
    settings are left as they were; the inference graph runs each layer's recurrence without saving for a
    backward pass."""
    lean = _count_calls(monkeypatch, "lean_recurrences")
    from medkern.models.networks import RecurrentNet
    from medkern.models.sequence import SequenceClassifier
    torch._dynamo.reset()
    torch.manual_seed(0)
    net = RecurrentNet(1, 2, **{**SequenceClassifier.ARCH, "rnn": rnn}).eval()
    x = torch.randn(3, 1, 50)
    want = copy.deepcopy(net).double()(x.double())
    compiled = medkern.optimize(net, fullgraph=True)
    assert isinstance(getattr(net, "rnn", None) or next(m for m in net.modules() if isinstance(m, torch.nn.RNNBase)),
                      (medkern.nn.LSTM, medkern.nn.GRU))
    assert _max_rel(compiled(x), want) <= 1e-4
    assert torch._dynamo.config.allow_rnn is False
    assert lean == [net.rnn.num_layers]


@pytest.mark.parametrize("pool", [torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True), torch.nn.MaxPool2d(2, dilation=2),
                                  torch.nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
                                  torch.nn.AvgPool2d(2, divisor_override=3)], ids=repr)
def test_pooling_runs_on_medkern_kernels(pool, monkeypatch):
    counts = []
    original = backend_module.use_medkern_pooling
    monkeypatch.setattr(backend_module, "use_medkern_pooling", lambda gm: counts.append(original(gm)) or counts[-1])
    torch._dynamo.reset()
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), pool, torch.nn.ReLU()).eval()
    x = _input(2, size=13)
    want = copy.deepcopy(net).double()(x.double())
    assert _max_rel(medkern.optimize(net)(x), want) <= 1e-5
    assert counts == [1]


def test_concurrent_calls_give_the_single_thread_answer():
    """A server's threads share one compiled model: after a parameter change, their first calls prepare the
    weights again, once, and every call gets the answer one thread gets."""
    from concurrent.futures import ThreadPoolExecutor
    torch._dynamo.reset()
    net = RandomNetwork(6).eval()
    compiled = medkern.optimize(net)
    inputs = [_input(2, n=2, seed=s) for s in range(16)]
    compiled(inputs[0])
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1.1)  # every fused node prepares again, in whichever thread calls it first
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(compiled, inputs))
    reference = copy.deepcopy(net).double()
    for x, y in zip(inputs, got):
        assert torch.equal(y, compiled(x))
        assert _max_rel(y, reference(x.double())) <= 1e-4


def test_parameter_only_work_is_done_once_and_redone_after_a_change(monkeypatch):
    """A bidirectional GRU's traced form concatenates and stacks its weights, a Linear transposes its weight:
    done once into a cache, and again after an optimiser-like in-place update."""
    from medkern.models.networks import RecurrentNet
    from medkern.models.sequence import SequenceClassifier
    hoisted = []
    original = backend_module.hoist_parameter_work
    monkeypatch.setattr(backend_module, "hoist_parameter_work",
                        lambda gm, w: hoisted.append(original(gm, w)) or hoisted[-1])
    torch._dynamo.reset()
    torch.manual_seed(1)
    net = RecurrentNet(1, 2, **SequenceClassifier.ARCH).eval()
    compiled = medkern.optimize(net)
    x = torch.randn(3, 1, 40)
    assert _max_rel(compiled(x), copy.deepcopy(net).double()(x.double())) <= 1e-4
    assert hoisted and hoisted[0] >= 3  # the GRU's weights, its biases, the head's transposed weight
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert _max_rel(compiled(x), copy.deepcopy(net).double()(x.double())) <= 1e-4


@pytest.mark.parametrize("seed", range(4))
def test_a_patched_model_compiles_to_the_same_fused_graph(seed, fused_counts):
    """medkern.patch's layers (medkern's conv op, its own BatchNorm folding and activation fusion) are fused
    as torch's are: every convolution one node, the folding done once."""
    torch._dynamo.reset()
    net = RandomNetwork(seed).eval()
    x = _input(2, seed=seed)
    want = copy.deepcopy(net).double()(x.double())
    patched = medkern.patch(copy.deepcopy(net))
    got = medkern.optimize(patched)(x)
    assert _max_rel(got, want) <= 1e-4
    assert sum(fused_counts) == _convolutions(net)


def test_a_model_made_under_inference_mode_compiles():
    """Its parameters are inference tensors, which have no version counter: prepared once."""
    torch._dynamo.reset()
    with torch.inference_mode():
        net = RandomNetwork(7).eval()
        x = _input(2)
        want = copy.deepcopy(net).double()(x.double())
        assert _max_rel(medkern.optimize(net)(x), want) <= 1e-4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("seed", range(3))
def test_cuda_network_runs_on_medkern_cuda_kernels(seed, fused_counts):
    """On a GPU the fused node runs medkern's CUDA convolution, with the prologue, residual and activation in
    torch: the same answers as float64 eager."""
    torch._dynamo.reset()
    net = RandomNetwork(seed).eval()
    x = _input(2, seed=seed)
    want = copy.deepcopy(net).double()(x.double())
    got = medkern.optimize(net.cuda())(x.cuda())
    assert got.is_cuda
    assert _max_rel(got.cpu(), want) <= 1e-4
    assert sum(fused_counts) == _convolutions(net)
