"""The cache of large CPU output buffers: a freed output's memory serves the next output of a similar
size, the tensors it hands out behave as ordinary ones, the accounting adds up, and it can be turned off."""
import os
import subprocess
import sys

import pytest
import torch

import medkern
from medkern import ops
from medkern.ops import _alloc

pytestmark = pytest.mark.skipif(medkern._native._C is None, reason="medkern._C is not built")

LARGE = (4, 16, 64, 64)  # 1 MiB of float32: just at the threshold


@pytest.fixture(autouse=True)
def empty_cache():
    """Each test starts with no free blocks, so which block a request gets is predictable."""
    medkern.empty_cache()
    yield


def test_freed_output_is_reused_and_results_stay_correct():
    x = torch.randn(4, 16, 128, 128)
    first = ops.max_pool2d(x, 2, 2)
    assert first.shape == LARGE
    ptr = first.data_ptr()
    before = medkern.cache_info()
    del first
    freed = medkern.cache_info()
    assert freed["cached_bytes"] >= before["cached_bytes"] + first_bytes()
    second = ops.max_pool2d(x, 2, 2)
    after = medkern.cache_info()
    assert second.data_ptr() == ptr, "the freed block was not reused"
    assert after["hits"] == freed["hits"] + 1
    assert torch.equal(second, torch.nn.functional.max_pool2d(x, 2, 2))


def first_bytes():
    return torch.Size(LARGE).numel() * 4


def test_blocks_serve_only_similar_sizes():
    """A block is reused for requests down to 3/4 of its size, never for a larger request."""
    big = _alloc.empty((1 << 20,), torch.empty(0))  # 4 MiB
    ptr = big.data_ptr()
    del big
    assert _alloc.empty((1 << 21,), torch.empty(0)).data_ptr() != ptr  # larger: a new block
    small = _alloc.empty((1 << 18,), torch.empty(0))  # 1 MiB: a quarter of the block, too wasteful
    assert small.data_ptr() != ptr
    near = _alloc.empty(((1 << 20) - 1000,), torch.empty(0))
    assert near.data_ptr() == ptr


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64])
def test_cached_tensor_is_an_ordinary_tensor(dtype):
    t = _alloc.empty((3, 5, 7, 2000), torch.empty(0, dtype=dtype))
    assert t.dtype == dtype and t.shape == (3, 5, 7, 2000) and t.is_contiguous() and t.device.type == "cpu"
    t.copy_(torch.arange(t.numel()).view(t.shape))
    assert t.view(-1)[-1].item() == t.numel() - 1
    assert t.data_ptr() % 64 == 0
    w = torch.randn(3, 5, 7, 2000, dtype=torch.float64, requires_grad=True)
    if dtype.is_floating_point:  # it carries autograd like any other tensor
        (w * t.to(torch.float64)).sum().backward()
        assert torch.equal(w.grad, t.to(torch.float64))


def test_default_limit_is_bounded():
    info = medkern.cache_info()
    assert 0 < info["limit_bytes"] <= 1 << 30


def test_small_outputs_bypass_the_cache():
    info = medkern.cache_info()
    out = _alloc.empty((100, 100), torch.empty(0))
    assert medkern.cache_info()["misses"] == info["misses"] and out.numel() == 10000


def test_empty_cache_frees_free_blocks_only():
    keep = _alloc.empty((1 << 19,), torch.empty(0))
    drop = _alloc.empty((1 << 19,), torch.empty(0))
    del drop
    assert medkern.cache_info()["cached_bytes"] > 0
    medkern.empty_cache()
    info = medkern.cache_info()
    assert info["cached_bytes"] == 0 and info["cached_blocks"] == 0
    assert info["in_use_bytes"] >= keep.numel() * 4
    keep.fill_(2.0)
    assert keep.sum().item() == 2.0 * keep.numel()


def test_poisoned_outputs_come_from_the_cache_too():
    """The suite's poisoning applies to cached blocks, so a reused block cannot hide an unwritten element."""
    t = _alloc.empty(LARGE, torch.empty(0))
    t.fill_(1.0)
    del t
    again = _alloc.empty(LARGE, torch.empty(0))
    assert _alloc.POISON and again.isnan().all()
    idx = _alloc.empty(LARGE, torch.empty(0), torch.int64)
    assert (idx == -1).all()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="dtype"):
        medkern._native._C.host_cache_empty([4], "float16")
    with pytest.raises(ValueError, match="shape"):
        medkern._native._C.host_cache_empty([-1, 4], "float32")


def test_cache_can_be_turned_off():
    code = ("import torch, medkern; from medkern import ops; x = torch.randn(4, 16, 128, 128); "
            "y = ops.max_pool2d(x, 2, 2); del y; "
            "assert medkern.cache_info()['cached_bytes'] == 0, medkern.cache_info(); print('off')")
    env = dict(os.environ, MEDKERN_CPU_CACHE_MB="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "off" in out.stdout, out.stderr
