"""Backend registry: what is available and why not, explicit selection, no silent fallback."""
import os
import subprocess
import sys

import pytest
import torch

import medkern
from medkern import backends


def test_available_reports_every_backend_with_reasons():
    status = backends.available()
    assert set(status) == {"native", "numba", "cupy", "reference"}
    assert status["native"].devices["cpu"] is None and status["reference"].devices["cpu"] is None
    for s in status.values():
        for device, why in s.devices.items():
            assert device in ("cpu", "cuda")
            assert why is None or (isinstance(why, str) and why)
    if not torch.cuda.is_available():
        assert not status["cupy"]
        assert status["native"].devices["cuda"] is not None


def test_default_is_native_and_use_nests():
    assert backends.current() == "native"
    with backends.use("reference"):
        assert backends.current() == "reference"
        with backends.use("native"):
            assert backends.current() == "native"
        assert backends.current() == "reference"
    assert backends.current() == "native"


def test_unavailable_backend_is_an_error_not_a_fallback():
    if torch.cuda.is_available():
        pytest.skip("cupy may be available on a GPU machine")
    with pytest.raises(backends.BackendUnavailableError, match="cupy"):
        with backends.use("cupy"):
            pass
    with pytest.raises(backends.BackendUnavailableError, match="no cpu implementation"):
        backends.family("conv", "cpu", "cupy")


def _run(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def test_environment_variable_selects_the_backend():
    proc = _run("import medkern; print(medkern.backends.current())", MEDKERN_BACKEND="reference")
    assert proc.returncode == 0 and proc.stdout.strip() == "reference"
    proc = _run("import medkern, torch; medkern.ops.conv2d(torch.ones(1,1,3,3), torch.ones(1,1,3,3))",
                MEDKERN_BACKEND="bogus")
    assert proc.returncode != 0 and "MEDKERN_BACKEND" in proc.stderr


def test_medkern_imports_without_the_cuda_module():
    proc = _run("import sys; sys.modules['medkern._C_cuda'] = None\n"
                "import medkern, torch\n"
                "print(medkern.backends.available()['native'].devices['cuda'])\n"
                "print(medkern.ops.conv2d(torch.ones(1,1,3,3), torch.ones(1,1,3,3)).item())")
    assert proc.returncode == 0, proc.stderr
    assert "not built" in proc.stdout and proc.stdout.strip().endswith("9.0")


def test_functorch_transforms_take_the_custom_ops():
    """Under vmap the ops see functorch's wrapped tensors, which only the custom ops (torch's batching
    fallback) can take: the fast paths must step aside, the cell step's included."""
    torch.manual_seed(0)
    x, w = torch.randn(3, 1, 2, 5, 5, dtype=torch.float64), torch.randn(4, 2, 3, 3, dtype=torch.float64)
    got = torch.func.vmap(lambda t: medkern.ops.conv2d(t, w, padding=1))(x)
    want = torch.stack([torch.nn.functional.conv2d(t, w, padding=1) for t in x])
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    ref = torch.nn.LSTMCell(3, 4).double()
    cell = medkern.nn.LSTMCell(3, 4).double()
    cell.load_state_dict(ref.state_dict())
    xs, h = torch.randn(5, 2, 3, dtype=torch.float64), (torch.randn(2, 4, dtype=torch.float64),) * 2
    with torch.no_grad():
        got = torch.func.vmap(lambda t: cell(t, h)[0])(xs)
        want = torch.stack([ref(t, h)[0] for t in xs])
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)


def test_optional_entries_are_declared_per_device_not_probed():
    """A backend module lists its optional entries per device type (OPTIONAL); ops ask has/optional."""
    assert backends.has("rnn", "cpu", "rnn_cell_forward", "native")
    assert backends.has("pool", "cpu", "max_pool2d_backward_from_input", "native")
    assert not backends.has("rnn", "cpu", "rnn_cell_forward", "reference")
    assert not backends.has("pool", "cpu", "no_such_entry", "native")
    x = torch.empty(1)
    fused = backends.optional("pool", x, "max_pool2d_backward_from_input")
    assert fused is backends.family("pool", "cpu", "native").max_pool2d_backward_from_input
    with backends.use("reference"):
        assert backends.optional("pool", x, "max_pool2d_backward_from_input") is None
    # the function is read from its module on each call: a patched module is seen
    mod = backends.family("pool", "cpu", "native")
    original = mod.max_pool2d_backward_from_input
    try:
        mod.max_pool2d_backward_from_input = marker = lambda *a: None
        assert backends.optional("pool", x, "max_pool2d_backward_from_input") is marker
    finally:
        mod.max_pool2d_backward_from_input = original
