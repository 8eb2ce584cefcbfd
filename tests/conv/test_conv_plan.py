"""The convolution planner (csrc/cpu/conv_plan.h): every named case takes the path it names, every path that
applies to a case computes it against float64 torch when forced, and forcing fails clearly where a path does
not apply."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import medkern
from medkern import _native
from medkern.ops import conv_paths, conv_plan, force_conv_path, forced_conv_path
from conftest import rel_err

from .cases import CASES, HAND_PICKED, case as named, reference

pytestmark = pytest.mark.skipif(_native._C is None, reason="the native CPU module is not built")

DIRECTIONS = ("forward", "grad_input", "grad_weight")
# float64 catches an index off by one as surely as float32, at a tolerance that leaves rounding no room;
# float32 runs the other vector width.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4}


def _planner():
    return _native.require_cpu()


def _run(direction, case, x, w, b, dy, dtype):
    """One direction's kernel into a NaN-poisoned output."""
    k = medkern.backends.family("conv", "cpu", "native")
    shape = {"forward": (case.N, case.K, *case.out_hw), "grad_input": x.shape, "grad_weight": w.shape}[direction]
    out = torch.full(shape, float("nan"), dtype=dtype)
    if direction == "forward":
        k.conv2d_forward(x, w, b, out, case.params)
    elif direction == "grad_input":
        k.conv2d_grad_input(dy, w, out, case.params)
    else:
        k.conv2d_grad_weight(dy, x, out, case.params)
    return out


@pytest.mark.parametrize("case", HAND_PICKED, ids=lambda c: c.id())
def test_named_case_takes_its_planned_path(case):
    got = tuple(_planner().conv_plan(d, *case.planner_args()) for d in DIRECTIONS)
    assert got == case.plans
    packed = _planner().conv_plan("forward", *case.planner_args(), True)
    assert packed == (case.packed_plan or case.plans[0])


def test_every_path_is_the_plan_of_some_named_case():
    """So that a threshold change which starves a path shows here, not as a silent loss of coverage."""
    planned = {(d, p.split(">")[0]) for c in HAND_PICKED for d, p in zip(DIRECTIONS, c.plans)}
    planned |= {("forward", c.packed_plan) for c in HAND_PICKED if c.packed_plan}
    applicable = {(d, p.split(">")[0])
                  for c in CASES for d in DIRECTIONS for p in _planner().conv_plans(d, *c.planner_args())}
    assert applicable == planned
    assert {p for d, p in planned if d == "forward"} == {
        "direct", "winograd_f2x3_panels", "winograd_f4x3", "winograd_f2x3", "winograd_f4x4_phases", "winograd_f2x2_phases",
        "few_outputs", "grid", "gemm_weight_panels",
        "gemm_across_images", "gemm"}
    assert {p for d, p in planned if d == "grad_input"} == {"grid", "as_forward", "phases", "gemm_col2im"}
    assert {p for d, p in planned if d == "grad_weight"} == {"winograd_f4x3", "winograd_f2x3", "grid",
                                                             "gemm_across_images", "gemm"}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id())
def test_every_applicable_path_matches_float64_torch(case, direction, dtype):
    x, w, b, dy = case.tensors(dtype)
    want = dict(zip(DIRECTIONS, reference(case, x, w, b, dy)[:3]))[direction]
    paths = _planner().conv_plans(direction, *case.planner_args(dtype == torch.float64))
    assert paths, "no path applies"
    for path in paths:
        with force_conv_path(path):
            got = _run(direction, case, x, w, b, dy, dtype)
        assert rel_err(got, want) < TOLERANCE[dtype], path


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("case", HAND_PICKED, ids=lambda c: c.id())
def test_conv_plan_names_the_path_that_runs(case, direction):
    """The planned path, forced, gives bit for bit the unforced result (the kernels are deterministic)."""
    x, w, b, dy = case.tensors(torch.float32)
    free = _run(direction, case, x, w, b, dy, torch.float32)
    with force_conv_path(case.plans[DIRECTIONS.index(direction)]):
        forced = _run(direction, case, x, w, b, dy, torch.float32)
    assert torch.equal(free, forced)


def test_phases_need_every_sub_kernel_within_reach():
    c = named("negative_phase_padding")  # k3 s2 p2: phase 1 would need negative padding
    assert not any(p.startswith("phases") for p in _planner().conv_plans("grad_input", *c.planner_args()))
    assert any(p.startswith("phases") for p in _planner().conv_plans("grad_input", *named("dcgan_k4s2").planner_args()))


def test_conv_plan_takes_torch_arguments_for_1d_2d_and_unbatched_calls():
    assert conv_plan((1, 64, 56, 56), (64, 64, 3, 3), padding=1) == "winograd_f4x3"
    assert conv_plan((64, 56, 56), (64, 64, 3, 3), padding="same") == "winograd_f4x3"  # unbatched
    assert conv_plan((1, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3) == "winograd_f4x4_phases"
    assert conv_plan((1, 3, 224, 224), (64, 3, 7, 7), stride=(2, 2), padding=(3, 3), dtype=torch.float64) == \
        "winograd_f4x4_phases"
    # A 1-d convolution is a 2-d one of height 1, planned as its kernels run it.
    assert conv_plan((64, 32, 1000), (32, 32, 7), padding=3) == conv_plan((64, 32, 1, 1000), (32, 32, 1, 7),
                                                                           padding=(0, 3))
    assert conv_plan((64, 32, 1000), (32, 32, 7), padding=3, direction="grad_input").startswith("as_forward>")
    # A 3-d call of depth 1 is a 2-d one.
    assert conv_plan((1, 64, 1, 56, 56), (64, 64, 1, 3, 3), padding=(0, 1, 1)) == "winograd_f4x3"
    assert "gemm" in conv_paths((2, 8, 9, 9), (16, 8, 3, 3), direction="grad_weight")


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(direction="backward"), ValueError, "direction"),
    (dict(dtype=torch.int64), ValueError, "dtype"),
    (dict(stride=0), ValueError, "stride"),
    (dict(groups=3), ValueError, "groups"),
    (dict(padding="full"), ValueError, "padding"),
])
def test_conv_plan_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        conv_plan((2, 8, 9, 9), (16, 8, 3, 3), **kwargs)


def test_conv_plan_bad_shapes():
    with pytest.raises(ValueError, match="weight_shape"):
        conv_plan((2, 8, 9, 9), (16, 8))
    with pytest.raises(ValueError, match="input_shape"):
        conv_plan((8, 9), (16, 8, 3, 3))
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        conv_plan((2, 8, 2, 2), (16, 8, 3, 3))


def test_volumes_take_the_paths_that_walk_the_nd_geometry():
    assert conv_plan((1, 4, 8, 8, 8), (4, 4, 3, 3, 3), padding=1) == "gemm"
    assert set(conv_paths((1, 4, 8, 8, 8), (4, 4, 3, 3, 3), padding=1, direction="grad_input")) == {
        "as_forward>direct", "as_forward>winograd3d_f2x3", "as_forward>gemm_across_images", "as_forward>gemm",
        "gemm_col2im"}
    with pytest.raises(ValueError, match="grid needs a 2-d shape"):
        with force_conv_path("grid"):
            conv_plan((1, 4, 8, 8, 8), (4, 4, 3, 3, 3))


def test_forcing_an_unknown_path_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown path 'winograd'.*'winograd_f2x3'.*'gemm_col2im'"):
        with force_conv_path("winograd"):
            pass
    with pytest.raises(ValueError, match="not a path with a sub-plan"):
        with force_conv_path("grid>gemm"):
            pass
    with pytest.raises(ValueError, match="not a path with a sub-plan"):
        with force_conv_path("as_forward>gemm_col2im"):  # the sub-plan must be a forward path
            pass
    assert forced_conv_path() == ""


def test_forced_path_that_does_not_apply_raises_through_the_op():
    x, w = torch.randn(2, 8, 9, 9), torch.randn(16, 8, 1, 1)
    with force_conv_path("winograd_f2x3"):
        assert forced_conv_path() == "winograd_f2x3"
        with pytest.raises(ValueError, match="winograd_f2x3.*does not apply to this forward.*3x3 kernel"):
            medkern.ops.conv2d(x, w)
        with pytest.raises(ValueError, match="does not apply"):
            conv_plan(x.shape, w.shape)
        # The grad-weight has a path of that name, which does not apply either ...
        with pytest.raises(ValueError, match="winograd_f2x3.*does not apply to this grad-weight.*3x3 kernel"):
            conv_plan(x.shape, w.shape, direction="grad_weight")
        # ... and a direction without one plans freely.
        assert not conv_plan(x.shape, w.shape, direction="grad_input").startswith("winograd")
    assert forced_conv_path() == ""
    with force_conv_path("as_forward>winograd_f4x4_phases"):
        with pytest.raises(ValueError, match="as_forward>winograd_f4x4_phases.*7x7 or 8x8"):
            conv_plan(x.shape, w.shape, direction="grad_input")


def test_forced_path_runs_through_autograd():
    """Forcing reaches every direction of a training step: with 'grid' forced, forward, grad-input and
    grad-weight of a stride-2 layer all run the grid, and match the free plan's answers."""
    x = torch.randn(2, 6, 20, 21, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, 6, 3, 3, dtype=torch.float64, requires_grad=True)
    free = torch.autograd.grad(medkern.ops.conv2d(x, w, stride=2, padding=1).square().sum(), (x, w))
    with force_conv_path("grid"):
        assert {conv_plan(x.shape, w.shape, stride=2, padding=1, direction=d) for d in DIRECTIONS} == {"grid"}
        forced = torch.autograd.grad(medkern.ops.conv2d(x, w, stride=2, padding=1).square().sum(), (x, w))
    for a, b in zip(free, forced):
        assert rel_err(a, b) < 1e-12


def _child(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_environment_variable_forces_the_path():
    r = _child("""
        import torch, medkern
        from medkern.ops import conv_plan, forced_conv_path
        assert forced_conv_path() == "gemm", forced_conv_path()
        assert conv_plan((1, 64, 56, 56), (64, 64, 3, 3), padding=1) == "gemm"
        assert conv_plan((1, 64, 56, 56), (64, 64, 3, 3), padding=1, direction="grad_weight") == "gemm"
        print("ok")
    """, MEDKERN_CONV_PATH="gemm")
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_bad_environment_variable_fails_each_convolution_clearly():
    r = _child("""
        import torch, medkern
        try:
            medkern.ops.conv2d(torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3))
        except ValueError as e:
            print("refused:", e)
    """, MEDKERN_CONV_PATH="fastest")
    assert r.returncode == 0, r.stderr
    assert "refused:" in r.stdout and "unknown path 'fastest'" in r.stdout
