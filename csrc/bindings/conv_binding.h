#pragma once
// The convolution bindings, written once for both modules and both ranks: conv2d_* take (N, C, H, W) tensors,
// conv3d_* (N, C, D, H, W) ones, and both run the same kernels over the N-d geometry. `Impl` supplies the
// kernels of one device:
//   static constexpr DeviceKind device;
//   static constexpr bool volumes;  // whether its kernels take a depth above 1
//   template <class T> static void forward(const ConvArgs<T>&, intptr_t stream);
//   ... grad_input, grad_weight, grad_bias with the same signature.
//   static constexpr bool prepacks;  // and, where true, layout_code(name), packed_weight_size<T>(layout, shape) and
//                                    // pack_weight<T>(layout, shape, w, out): weights packed once for a forward
//                                    // path that reads them so (see cpu/conv2d.h)
// The CPU module ignores `stream`; the CUDA module launches on it (torch's current stream).
#include <pybind11/pybind11.h>

#include "conv_args.h"

namespace medkern {

// The checked views of one conv2d call; run() is every binding's common tail: with the GIL released, the
// kernel gets a ConvArgs whose pointers are those of the views present (absent ones are null).
struct ConvCall {
  TensorView x, w, bias, y, dy, dx, dw, db, residual, packed_w, in_scale, in_shift;
  ConvShape s{};

  template <class Kernel>
  void run(const TensorView& typed, Kernel&& kernel) const {
    py::gil_scoped_release nogil;
    dispatch_float(typed.dtype, [&](auto t) {
      using T = decltype(t);
      ConvArgs<T> a{};
      a.s = s; a.x = x.ptr<T>(); a.w = w.ptr<T>(); a.bias = bias.ptr<T>(); a.y = y.ptr<T>();
      a.dy = dy.ptr<T>(); a.dx = dx.ptr<T>(); a.dw = dw.ptr<T>(); a.db = db.ptr<T>();
      a.residual = residual.ptr<T>(); a.packed_w = packed_w.ptr<T>();
      a.in_scale = in_scale.ptr<T>(); a.in_shift = in_shift.ptr<T>();
      kernel(a);
    });
  }
};

// dy, the gradient of the output of the convolution `c.s` describes, on its data's device and dtype.
inline void expect_grad_output(const ConvCall& c, const TensorView& like, int rank) {
  expect_same(c.dy, like, "grad_output");
  expect_conv_output_shape(c.dy, c.s, rank, "grad_output");
}

// The prepacked weights of the convolution c.s describes: a 1-d tensor of exactly the packed size.
template <class Impl>
void expect_packed_weight(const ConvCall& c, int layout, const TensorView& packed, const TensorView& like) {
  expect_same(packed, like, "packed_weight");
  int64_t size = 0;
  dispatch_float(like.dtype, [&](auto t) { size = Impl::template packed_weight_size<decltype(t)>(layout, c.s); });
  if (packed.ndim != 1 || packed.shape[0] != size)
    fail_value("packed_weight: expected a 1-d tensor of " + std::to_string(size) +
               " elements (from conv2d_pack_weight of this weight and groups), got shape " + shape_str(packed));
}

// The kernel extents and channels a packed layout depends on, from a 2-d (K, C/groups, R, S) or 3-d
// (K, C/groups, T, R, S) weight.
inline ConvShape packed_kernel_shape(const TensorView& w, int64_t groups) {
  if (w.ndim != 4 && w.ndim != 5) fail_value("weight: expected 4 or 5 dimensions, got shape " + shape_str(w));
  if (groups < 1 || w.shape[0] % groups) fail_value("groups: must be positive and divide the output channels");
  ConvShape s{};
  const bool volume = w.ndim == 5;
  s.K = w.shape[0]; s.C = w.shape[1] * groups; s.groups = groups;
  s.T = volume ? w.shape[2] : 1; s.R = w.shape[volume ? 3 : 2]; s.S = w.shape[volume ? 4 : 3];
  return s;
}

// The geometry of a 3-d call, per axis (depth, height, width).
inline ConvGeometry volume_geometry(int64_t sd, int64_t sh, int64_t sw, int64_t pd, int64_t ph, int64_t pw, int64_t dd,
                                    int64_t dh, int64_t dw, int64_t groups) {
  return ConvGeometry{{sd, sh, sw}, {pd, ph, pw}, {dd, dh, dw}, groups};
}

template <class Impl>
void expect_rank_served(int rank) {
  if constexpr (!Impl::volumes)
    if (rank == 5) fail_value("3-d convolution: this device has no kernel for volumes yet");
}

// The optional operands of a forward call.
struct ForwardExtras {
  py::handle residual = py::none(), packed = py::none(), in_scale = py::none(), in_shift = py::none();
  std::string packed_layout;
  bool in_relu = false;
};

template <class Impl>
void conv_forward_call(py::handle x_, py::handle w_, py::handle b_, py::handle y_, const ConvGeometry& g, int rank,
                       intptr_t stream, int activation, double slope, const ForwardExtras& e) {
  if (activation < 0 || activation > 2) fail_value("activation: must be 0 (none), 1 (relu) or 2 (leaky_relu)");
  if (!(slope >= 0.0) || slope > 1e30) fail_value("negative_slope: must be finite and non-negative");
  ConvCall c;
  c.x = view_of(x_, "input"); c.w = view_of(w_, "weight"); c.y = view_of(y_, "out");
  expect_device(c.x, Impl::device, "input");
  expect_rank_served<Impl>(rank);
  c.s = make_conv_shape_of(c.x, c.w, c.y, rank, g, "input", "weight", "out");
  expect_same(c.y, c.x, "out");
  expect_writable(c.y, "out");
  expect_conv_output_shape(c.y, c.s, rank, "out");
  if (!b_.is_none()) {
    c.bias = view_of(b_, "bias");
    expect_same(c.bias, c.x, "bias");
    expect_shape(c.bias, {c.s.K}, "bias");
  }
  if (!e.residual.is_none()) {
    if constexpr (!Impl::prepacks) fail_value("residual: the fused residual add is CPU-only");
    c.residual = view_of(e.residual, "residual");
    expect_same(c.residual, c.x, "residual");
    expect_conv_output_shape(c.residual, c.s, rank, "residual");
    if (overlaps(c.residual, c.y)) fail_value("residual: must not overlap out");
  }
  int layout = 0;
  if (!e.packed.is_none()) {
    if constexpr (Impl::prepacks) {
      layout = Impl::layout_code(e.packed_layout);
      c.packed_w = view_of(e.packed, "packed_weight");
      expect_packed_weight<Impl>(c, layout, c.packed_w, c.x);
    } else {
      fail_value("packed_weight: prepacked weights are CPU-only");
    }
  }
  if (e.in_scale.is_none() != e.in_shift.is_none()) fail_value("input_scale, input_shift: give both or neither");
  if (!e.in_scale.is_none()) {
    if constexpr (!Impl::prepacks) fail_value("input_scale: the fused input prologue is CPU-only");
    c.in_scale = view_of(e.in_scale, "input_scale");
    c.in_shift = view_of(e.in_shift, "input_shift");
    expect_same(c.in_scale, c.x, "input_scale");
    expect_same(c.in_shift, c.x, "input_shift");
    expect_shape(c.in_scale, {c.s.C}, "input_scale");
    expect_shape(c.in_shift, {c.s.C}, "input_shift");
  } else if (e.in_relu) {
    fail_value("input_relu: needs input_scale and input_shift");
  }
  prefer_huge_pages(c.y);
  c.run(c.x, [&](auto& a) {
    a.packed_layout = layout;
    a.in_relu = e.in_relu;
    a.act = static_cast<Activation>(activation);
    a.slope = static_cast<elem_t<decltype(a)>>(slope);
    Impl::template forward<elem_t<decltype(a)>>(a, stream);
  });
}

template <class Impl>
void conv_grad_input_call(py::handle dy_, py::handle w_, py::handle dx_, const ConvGeometry& g, int rank,
                          intptr_t stream) {
  ConvCall c;
  c.dy = view_of(dy_, "grad_output"); c.w = view_of(w_, "weight"); c.dx = view_of(dx_, "grad_input");
  expect_device(c.dx, Impl::device, "grad_input");
  expect_rank_served<Impl>(rank);
  expect_writable(c.dx, "grad_input");
  c.s = make_conv_shape_of(c.dx, c.w, c.dy, rank, g, "grad_input", "weight", "grad_output");
  expect_grad_output(c, c.dx, rank);
  prefer_huge_pages(c.dx);
  c.run(c.dx, [&](auto& a) { Impl::template grad_input<elem_t<decltype(a)>>(a, stream); });
}

template <class Impl>
void conv_grad_weight_call(py::handle dy_, py::handle x_, py::handle dw_, const ConvGeometry& g, int rank,
                           intptr_t stream) {
  ConvCall c;
  c.dy = view_of(dy_, "grad_output"); c.x = view_of(x_, "input"); c.dw = view_of(dw_, "grad_weight");
  expect_device(c.x, Impl::device, "input");
  expect_rank_served<Impl>(rank);
  expect_writable(c.dw, "grad_weight");
  c.s = make_conv_shape_of(c.x, c.dw, c.dy, rank, g, "input", "grad_weight", "grad_output");
  expect_grad_output(c, c.x, rank);
  c.run(c.x, [&](auto& a) { Impl::template grad_weight<elem_t<decltype(a)>>(a, stream); });
}

template <class Impl>
void bind_conv(py::module_& m) {
  using py::arg;

  m.def(
      "conv2d_forward",
      [](py::handle x_, py::handle w_, py::handle b_, py::handle y_, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
         int64_t dh, int64_t dw, int64_t groups, intptr_t stream, int activation, double slope, py::handle residual_,
         py::handle packed_, const std::string& packed_layout, py::handle in_scale_, py::handle in_shift_,
         bool in_relu) {
        conv_forward_call<Impl>(x_, w_, b_, y_, planar_geometry(sh, sw, ph, pw, dh, dw, groups), 4, stream, activation,
                                slope, ForwardExtras{residual_, packed_, in_scale_, in_shift_, packed_layout, in_relu});
      },
      arg("input"), arg("weight"), arg("bias"), arg("out"), arg("stride_h"), arg("stride_w"), arg("pad_h"),
      arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("groups"), arg("stream") = 0, arg("activation") = 0,
      arg("negative_slope") = 0.0, arg("residual") = py::none(), arg("packed_weight") = py::none(),
      arg("packed_layout") = "", arg("input_scale") = py::none(), arg("input_shift") = py::none(),
      arg("input_relu") = false,
      "out = act(conv2d(pro(input), weight) + bias + residual), written in full into `out` (N, K, P, Q); activation "
      "0 none, 1 relu, 2 leaky_relu with negative_slope >= 0; residual (N, K, P, Q) or None; packed_weight: "
      "conv2d_pack_weight(weight, out, groups, packed_layout), used where the planned path is packed_layout; "
      "pro(x)[:, c] = x[:, c] * input_scale[c] + input_shift[c], then ReLU with input_relu (the identity without "
      "input_scale).");
  m.def(
      "conv3d_forward",
      [](py::handle x_, py::handle w_, py::handle b_, py::handle y_, int64_t sd, int64_t sh, int64_t sw, int64_t pd,
         int64_t ph, int64_t pw, int64_t dd, int64_t dh, int64_t dw, int64_t groups, intptr_t stream, int activation,
         double slope, py::handle residual_, py::handle in_scale_, py::handle in_shift_, bool in_relu,
         py::handle packed_, const std::string& packed_layout) {
        conv_forward_call<Impl>(x_, w_, b_, y_, volume_geometry(sd, sh, sw, pd, ph, pw, dd, dh, dw, groups), 5, stream,
                                activation, slope,
                                ForwardExtras{residual_, packed_, in_scale_, in_shift_, packed_layout, in_relu});
      },
      arg("input"), arg("weight"), arg("bias"), arg("out"), arg("stride_d"), arg("stride_h"), arg("stride_w"),
      arg("pad_d"), arg("pad_h"), arg("pad_w"), arg("dilation_d"), arg("dilation_h"), arg("dilation_w"), arg("groups"),
      arg("stream") = 0, arg("activation") = 0, arg("negative_slope") = 0.0, arg("residual") = py::none(),
      arg("input_scale") = py::none(), arg("input_shift") = py::none(), arg("input_relu") = false,
      arg("packed_weight") = py::none(), arg("packed_layout") = "",
      "out = act(conv3d(pro(input), weight) + bias + residual), written in full into `out` (N, K, O, P, Q); input "
      "(N, C, D, H, W), weight (K, C/groups, T, R, S), leading padding per axis; activation, residual, the input "
      "prologue pro and packed_weight as conv2d_forward's.");

  if constexpr (Impl::prepacks) {
    m.def(
        "conv2d_packed_weight_numel",
        [](py::handle w_, int64_t groups, const std::string& layout) {
          const TensorView w = view_of(w_, "weight");
          ConvShape s = packed_kernel_shape(w, groups);
          int64_t size = 0;
          const int code = Impl::layout_code(layout);
          dispatch_float(w.dtype, [&](auto t) { size = Impl::template packed_weight_size<decltype(t)>(code, s); });
          return size;
        },
        arg("weight"), arg("groups"), arg("layout"),
        "Elements of conv2d_pack_weight's output for this weight, groups and layout.");
    m.def(
        "conv2d_pack_weight",
        [](py::handle w_, py::handle out_, int64_t groups, const std::string& layout) {
          ConvCall c;
          c.w = view_of(w_, "weight");
          expect_device(c.w, Impl::device, "weight");
          c.s = packed_kernel_shape(c.w, groups);
          c.y = view_of(out_, "out");
          expect_writable(c.y, "out");
          const int code = Impl::layout_code(layout);
          expect_packed_weight<Impl>(c, code, c.y, c.w);
          c.run(c.w, [&](auto& a) { Impl::template pack_weight<elem_t<decltype(a)>>(code, a.s, a.w, a.y); });
        },
        arg("weight"), arg("out"), arg("groups"), arg("layout"),
        "out = weight (K, C/groups, R, S) packed for forward path `layout` ('direct', 'gemm_weight_panels' or "
        "'winograd_f2x3_panels'), conv2d_forward's packed_weight; or a volume's (K, C, 3, 3, 3) for "
        "'winograd3d_f2x3', conv3d_forward's.");
  }

  m.def(
      "conv2d_grad_input",
      [](py::handle dy_, py::handle w_, py::handle dx_, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
         int64_t dw, int64_t groups, intptr_t stream) {
        conv_grad_input_call<Impl>(dy_, w_, dx_, planar_geometry(sh, sw, ph, pw, dh, dw, groups), 4, stream);
      },
      arg("grad_output"), arg("weight"), arg("grad_input"), arg("stride_h"), arg("stride_w"), arg("pad_h"),
      arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("groups"), arg("stream") = 0,
      "grad_input = d(conv2d)/d(input) applied to grad_output, written in full.");
  m.def(
      "conv3d_grad_input",
      [](py::handle dy_, py::handle w_, py::handle dx_, int64_t sd, int64_t sh, int64_t sw, int64_t pd, int64_t ph,
         int64_t pw, int64_t dd, int64_t dh, int64_t dw, int64_t groups, intptr_t stream) {
        conv_grad_input_call<Impl>(dy_, w_, dx_, volume_geometry(sd, sh, sw, pd, ph, pw, dd, dh, dw, groups), 5, stream);
      },
      arg("grad_output"), arg("weight"), arg("grad_input"), arg("stride_d"), arg("stride_h"), arg("stride_w"),
      arg("pad_d"), arg("pad_h"), arg("pad_w"), arg("dilation_d"), arg("dilation_h"), arg("dilation_w"), arg("groups"),
      arg("stream") = 0, "grad_input = d(conv3d)/d(input) applied to grad_output, written in full.");

  m.def(
      "conv2d_grad_weight",
      [](py::handle dy_, py::handle x_, py::handle dw_, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
         int64_t dw, int64_t groups, intptr_t stream) {
        conv_grad_weight_call<Impl>(dy_, x_, dw_, planar_geometry(sh, sw, ph, pw, dh, dw, groups), 4, stream);
      },
      arg("grad_output"), arg("input"), arg("grad_weight"), arg("stride_h"), arg("stride_w"), arg("pad_h"),
      arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("groups"), arg("stream") = 0,
      "grad_weight = d(conv2d)/d(weight) applied to grad_output, summed over the batch, written in full.");
  m.def(
      "conv3d_grad_weight",
      [](py::handle dy_, py::handle x_, py::handle dw_, int64_t sd, int64_t sh, int64_t sw, int64_t pd, int64_t ph,
         int64_t pw, int64_t dd, int64_t dh, int64_t dw, int64_t groups, intptr_t stream) {
        conv_grad_weight_call<Impl>(dy_, x_, dw_, volume_geometry(sd, sh, sw, pd, ph, pw, dd, dh, dw, groups), 5, stream);
      },
      arg("grad_output"), arg("input"), arg("grad_weight"), arg("stride_d"), arg("stride_h"), arg("stride_w"),
      arg("pad_d"), arg("pad_h"), arg("pad_w"), arg("dilation_d"), arg("dilation_h"), arg("dilation_w"), arg("groups"),
      arg("stream") = 0, "grad_weight = d(conv3d)/d(weight) applied to grad_output, summed over the batch, written in full.");

  m.def(
      "conv2d_grad_bias",
      [](py::handle dy_, py::handle db_, intptr_t stream) {
        ConvCall c;
        c.dy = view_of(dy_, "grad_output"); c.db = view_of(db_, "grad_bias");
        expect_device(c.dy, Impl::device, "grad_output");
        expect_rank(c.dy, 4, "grad_output");
        expect_same(c.db, c.dy, "grad_bias");
        expect_writable(c.db, "grad_bias");
        expect_shape(c.db, {c.dy.shape[1]}, "grad_bias");
        c.s.N = c.dy.shape[0]; c.s.K = c.dy.shape[1]; c.s.P = c.dy.shape[2]; c.s.Q = c.dy.shape[3];
        c.run(c.dy, [&](auto& a) { Impl::template grad_bias<elem_t<decltype(a)>>(a, stream); });
      },
      arg("grad_output"), arg("grad_bias"), arg("stream") = 0, "grad_bias = grad_output summed over N, P, Q.");
}

}  // namespace medkern
