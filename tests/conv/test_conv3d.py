"""3-d convolution ops: conv3d and conv_transpose3d against torch with gradcheck/gradgradcheck and opcheck, bad
input, and the modules medkern.patch swaps in (the kernels themselves: test_conv3d_kernels.py)."""
import copy

import pytest
import torch
import torch.nn.functional as F

import medkern
from conftest import ROUTES, rel_err, route_context


# --- the ops ------------------------------------------------------------------------------------------------

OP_OPTIONS = {
    "padding_1": dict(padding=1),
    "same": dict(padding="same"),
    "same_even_dilated": dict(padding="same", dilation=(1, 2, 1)),
    "valid": dict(padding="valid"),
    "strided_anisotropic": dict(stride=(2, 1, 3), padding=(1, 0, 2)),
    "grouped_dilated": dict(groups=2, dilation=2, padding=2),
}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("options", OP_OPTIONS, ids=str)
def test_conv3d_op_matches_torch(options, route):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 7, 6, 9, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 4 // OP_OPTIONS[options].get("groups", 1), 3, 2, 3, generator=g, dtype=torch.float64,
                    requires_grad=True)
    b = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    with route_context(route):
        y = medkern.ops.conv3d(x, w, b, **OP_OPTIONS[options])
    want = F.conv3d(x, w, b, **OP_OPTIONS[options])
    assert rel_err(y, want) < 1e-12
    dy = torch.randn_like(want)
    got, ref = torch.autograd.grad(y, (x, w, b), dy), torch.autograd.grad(want, (x, w, b), dy)
    for a, r in zip(got, ref):
        assert rel_err(a, r) < 1e-12


@pytest.mark.parametrize("activation,slope", [("relu", 0.0), ("leaky_relu", 0.2)], ids=["relu", "leaky_relu"])
def test_fused_activation(activation, slope):
    x, w, b = torch.randn(1, 3, 5, 5, 5), torch.randn(4, 3, 3, 3, 3), torch.randn(4)
    y = medkern.ops.conv3d(x, w, b, padding=1, activation=activation, negative_slope=slope)
    want = F.conv3d(x, w, b, padding=1)
    want = F.relu(want) if activation == "relu" else F.leaky_relu(want, slope)
    assert rel_err(y, want) < 1e-5


def test_gradcheck_and_gradgradcheck():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 2, 4, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 2, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)

    def f(x, w, b):
        return medkern.ops.conv3d(x, w, b, stride=(1, 2, 1), padding=(1, 1, 0), activation="leaky_relu",
                                  negative_slope=0.3)
    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(lambda x, w, b: medkern.ops.conv3d(x, w, b, padding=1, dilation=(2, 1, 1)),
                                        (x, w, b))


TRANSPOSE_OPTIONS = {
    "stride2_output_padding": dict(stride=2, padding=1, output_padding=1),
    "anisotropic": dict(stride=(1, 2, 3), padding=(0, 1, 1), output_padding=(0, 1, 2)),
    "grouped_dilated": dict(groups=2, dilation=(2, 1, 2), padding=1),
}


@pytest.mark.parametrize("options", TRANSPOSE_OPTIONS, ids=str)
def test_conv_transpose3d_matches_torch_and_differentiates_twice(options):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 3, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3 * TRANSPOSE_OPTIONS[options].get("groups", 1), generator=g, dtype=torch.float64,
                    requires_grad=True)
    kw = TRANSPOSE_OPTIONS[options]
    assert rel_err(medkern.ops.conv_transpose3d(x, w, b, **kw), F.conv_transpose3d(x, w, b, **kw)) < 1e-12
    assert torch.autograd.gradcheck(lambda x, w, b: medkern.ops.conv_transpose3d(x, w, b, **kw), (x, w, b))
    assert torch.autograd.gradgradcheck(lambda x, w: medkern.ops.conv_transpose3d(x, w, None, **kw), (x, w))


def test_unbatched_channels_last_and_float32():
    x = torch.randn(2, 3, 6, 7, 8).to(memory_format=torch.channels_last_3d)
    w = torch.randn(5, 3, 3, 3, 3)
    assert not x.is_contiguous()
    assert rel_err(medkern.ops.conv3d(x, w, padding=1), F.conv3d(x, w, padding=1)) < 1e-5
    assert rel_err(medkern.ops.conv3d(x[0], w, padding=1), F.conv3d(x[0], w, padding=1)) < 1e-5


def test_empty_batch():
    x = torch.randn(0, 3, 4, 4, 4, requires_grad=True)
    w = torch.randn(2, 3, 3, 3, 3, requires_grad=True)
    y = medkern.ops.conv3d(x, w)
    assert y.shape == (0, 2, 2, 2, 2)
    gx, gw = torch.autograd.grad(y.sum(), (x, w))
    assert gx.shape == x.shape and torch.equal(gw, torch.zeros_like(w))


def _opcheck_samples():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 5, 7, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 2, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    geom = ([1, 2, 1], [1, 1, 0, 0, 1, 1], [2, 1, 2], 2)  # leading padding (1, 1, 0), trailing (0, 1, 1)
    out_shape = torch.ops.medkern.conv3d(x, w, b, *geom).shape
    dy = torch.randn(out_shape, generator=g, dtype=torch.float64, requires_grad=True)
    ops = torch.ops.medkern
    return {
        "forward": (ops.conv3d.default, (x, w, b, *geom)),
        "forward_no_bias": (ops.conv3d.default, (x, w, None, *geom)),
        "grad_input": (ops.conv3d_grad_input.default, (dy, w, list(x.shape), *geom)),
        "grad_weight": (ops.conv3d_grad_weight.default, (dy, x, list(w.shape), *geom)),
        "grad_bias": (ops.conv2d_grad_bias.default, (dy,)),
    }


@pytest.mark.parametrize("sample", list(_opcheck_samples()), ids=str)
def test_opcheck(sample):
    op, args = _opcheck_samples()[sample]
    torch.library.opcheck(op, args)


BAD_CALLS = {
    "input_rank": (lambda: medkern.ops.conv3d(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 3, 3, 3)), ValueError,
                   "input"),
    "weight_rank": (lambda: medkern.ops.conv3d(torch.randn(1, 3, 4, 4, 4), torch.randn(2, 3, 3, 3)), ValueError,
                    "weight"),
    "channels": (lambda: medkern.ops.conv3d(torch.randn(1, 3, 4, 4, 4), torch.randn(2, 4, 3, 3, 3)), ValueError,
                 "weight: expected 3 input channels"),
    "groups": (lambda: medkern.ops.conv3d(torch.randn(1, 4, 4, 4, 4), torch.randn(3, 2, 1, 1, 1), groups=2),
               ValueError, "groups"),
    "stride_length": (lambda: medkern.ops.conv3d(torch.randn(1, 3, 4, 4, 4), torch.randn(2, 3, 1, 1, 1),
                                                 stride=(1, 1)), ValueError, "stride"),
    "negative_padding": (lambda: medkern.ops.conv3d(torch.randn(1, 3, 4, 4, 4), torch.randn(2, 3, 1, 1, 1),
                                                    padding=-1), ValueError, "padding"),
    "same_strided": (lambda: medkern.ops.conv3d(torch.randn(1, 3, 4, 4, 4), torch.randn(2, 3, 3, 3, 3),
                                                padding="same", stride=2), ValueError, "same"),
    "kernel_too_big": (lambda: medkern.ops.conv3d(torch.randn(1, 3, 2, 4, 4), torch.randn(2, 3, 3, 3, 3)),
                       ValueError, "smaller than the dilated kernel"),
    "dtype_mismatch": (lambda: medkern.ops.conv3d(torch.randn(1, 3, 4, 4, 4), torch.randn(2, 3, 1, 1, 1).double()),
                       TypeError, "dtype"),
    "transpose_output_padding": (lambda: medkern.ops.conv_transpose3d(torch.randn(1, 3, 4, 4, 4),
                                                                      torch.randn(3, 2, 3, 3, 3), stride=2,
                                                                      output_padding=2), ValueError, "output_padding"),
}


@pytest.mark.parametrize("call", BAD_CALLS, ids=str)
def test_bad_input_names_the_problem(call):
    fn, error, match = BAD_CALLS[call]
    with pytest.raises(error, match=match):
        fn()


def test_binding_checks_its_arguments():
    from torch.utils.dlpack import to_dlpack as dl

    from medkern import _native

    C = _native.require_cpu()
    x, w = torch.randn(1, 2, 4, 4, 4), torch.randn(3, 2, 3, 3, 3)
    with pytest.raises(ValueError, match="out: expected shape"):
        C.conv3d_forward(dl(x), dl(w), None, dl(torch.empty(1, 4, 2, 2, 2)), 1, 1, 1, 0, 0, 0, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="weight: expected rank 5"):
        C.conv3d_forward(dl(x), dl(w[0]), None, dl(torch.empty(1, 3, 2, 2, 2)), 1, 1, 1, 0, 0, 0, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="stride: must be positive"):
        C.conv3d_grad_input(dl(torch.empty(1, 3, 2, 2, 2)), dl(w), dl(torch.empty_like(x)), 0, 1, 1, 0, 0, 0, 1, 1, 1,
                            1)


# --- modules ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_conv3d_module_is_torchs_with_medkerns_forward(padding_mode):
    torch.manual_seed(0)
    ref = torch.nn.Conv3d(3, 4, (3, 2, 3), stride=(1, 2, 1), padding=(1, 1, 1), padding_mode=padding_mode).double()
    mine = medkern.nn.Conv3d(3, 4, (3, 2, 3), stride=(1, 2, 1), padding=(1, 1, 1), padding_mode=padding_mode).double()
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 5, 6, 7, dtype=torch.float64)
    assert rel_err(mine(x), ref(x)) < 1e-12


def test_conv_transpose3d_module_output_size():
    torch.manual_seed(0)
    ref = torch.nn.ConvTranspose3d(4, 2, 3, stride=2, padding=1).double()
    mine = copy.deepcopy(ref)
    medkern.patch(mine)
    assert type(mine) is medkern.nn.ConvTranspose3d
    x = torch.randn(1, 4, 3, 4, 5, dtype=torch.float64)
    for size in [None, (6, 8, 10)]:
        assert rel_err(mine(x, output_size=size), ref(x, output_size=size)) < 1e-12


def test_patch_swaps_and_folds_a_3d_network():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3, padding=1), torch.nn.BatchNorm3d(4), torch.nn.ReLU(),
                              torch.nn.Conv3d(4, 4, 3, stride=2, bias=False), torch.nn.LeakyReLU(0.1),
                              torch.nn.ConvTranspose3d(4, 2, 2, stride=2)).double()
    net[1].running_mean.uniform_(-1, 1)
    net[1].running_var.uniform_(0.5, 2)
    patched = medkern.patch(copy.deepcopy(net))
    assert [type(m).__name__ for m in patched] == ["Conv3d", "FoldedBatchNorm3d", "Identity", "Conv3d", "Identity",
                                                  "ConvTranspose3d"]
    assert patched.state_dict().keys() == net.state_dict().keys()
    x = torch.randn(2, 2, 6, 7, 8, dtype=torch.float64)
    for mode in (net.eval, net.train):
        mode()
        patched.train(net.training)
        assert rel_err(patched(x), net(x)) < 1e-12


def test_torch_compile_fullgraph():
    torch._dynamo.reset()
    model = medkern.patch(torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3, padding=1), torch.nn.ReLU(),
                                              torch.nn.Conv3d(4, 2, 3, stride=2)))
    x = torch.randn(2, 2, 6, 6, 6)
    y = torch.compile(model, fullgraph=True, backend="aot_eager")(x)
    assert rel_err(y, model(x)) < 1e-6
    y.sum().backward()
    assert model[0].weight.grad is not None
