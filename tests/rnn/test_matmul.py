"""The native CPU strided matrix product behind the recurrent layers' weight and wide input gradients
(``medkern._C.matmul``): against float64 torch on awkward shapes and every operand layout the ops hand it
(transposed views, column slices), across its reduction blocks, column blocks and both thread splits;
outputs poisoned with NaN first. Bad arguments raise errors naming them; a hypothesis fuzz in a child
process checks that no argument crashes the binding."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TOL, rel_err
from medkern import _native

C = _native.require_cpu()

# (M, K, N): one element; odd sizes under one tile; K across reduction blocks of 256; N across column
# blocks of 480 floats; few rows and many columns (the column split); a weight gradient's shape; long
# reductions split along K over the threads, the second computed transposed where A is (padding 30 columns
# to 48 costs more than 200 to 240).
SHAPES = [(1, 1, 1), (5, 123, 123), (9, 257, 49), (17, 600, 97), (7, 530, 1000), (3, 40, 700), (100, 3, 200),
          (512, 1100, 128), (130, 0, 7), (64, 4000, 40), (200, 3000, 30)]


def _operand(rows, cols, layout, dtype, g):
    """A rows x cols operand as a row-major tensor, a transposed view, or a column slice of a wider one."""
    if layout == "row":
        return torch.randn(rows, cols, dtype=dtype, generator=g)
    if layout == "transposed":
        return torch.randn(cols, rows, dtype=dtype, generator=g).t()
    return torch.randn(rows, cols + 5, dtype=dtype, generator=g)[:, 2:2 + cols]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("layout_a", ["row", "transposed", "slice"])
@pytest.mark.parametrize("layout_b", ["row", "transposed", "slice"])
@pytest.mark.parametrize("M, K, N", SHAPES, ids=str)
def test_matches_torch(dtype, layout_a, layout_b, M, K, N):
    g = torch.Generator().manual_seed(M * 7919 + K * 31 + N)
    a, b = _operand(M, K, layout_a, dtype, g), _operand(K, N, layout_b, dtype, g)
    out = torch.full((M, N), float("nan"), dtype=dtype)
    C.matmul(a, b, out)
    want = a.double() @ b.double()
    if K == 0:
        assert torch.equal(out, torch.zeros_like(out))
    else:
        assert rel_err(out, want) < TOL[dtype] * 10


@pytest.mark.parametrize("threads", [1, 2])
def test_thread_count_does_not_change_the_result(threads):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, 800, generator=g).t(), torch.randn(300, 130, generator=g)
    before = C.num_threads()
    try:
        C.set_num_threads(threads)
        out = torch.empty(800, 130)
        C.matmul(a, b, out)
    finally:
        C.set_num_threads(before)
    assert rel_err(out, a.double() @ b.double()) < 1e-5


def test_bad_arguments_name_themselves():
    a, b, out = torch.randn(4, 5), torch.randn(5, 3), torch.empty(4, 3)
    with pytest.raises(ValueError, match="b: expected 5 rows"):
        C.matmul(a, torch.randn(6, 3), out)
    with pytest.raises(ValueError, match="out: expected shape"):
        C.matmul(a, b, torch.empty(3, 4))
    with pytest.raises(ValueError, match="out: must be contiguous"):
        C.matmul(a, b, torch.empty(3, 4).t())
    with pytest.raises(TypeError, match="b: dtype"):
        C.matmul(a, b.double(), out)
    with pytest.raises(TypeError, match="a: expected a float32 or float64"):
        C.matmul(a.int(), b, out)
    with pytest.raises(ValueError, match="a: expected rank 2"):
        C.matmul(a[0], b, out)
    with pytest.raises(ValueError, match="a: negative strides"):
        C.matmul(torch.randn(4, 5).numpy()[::-1], b.numpy(), out.numpy())
    with pytest.raises(ValueError, match="out: must not overlap"):
        big = torch.randn(4, 5)
        C.matmul(big, torch.randn(5, 5), big)


def test_fuzzed_binding_never_crashes():
    script = Path(__file__).with_name("_fuzz_matmul.py")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"fuzz child exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "examples" in proc.stdout
