#pragma once
// The conv2d bindings, written once for both modules. `Impl` supplies the kernels of one device:
//   static constexpr DeviceKind device;
//   template <class T> static void forward(const ConvArgs<T>&, intptr_t stream);
//   ... grad_input, grad_weight, grad_bias with the same signature.
// The CPU module ignores `stream`; the CUDA module launches on it (torch's current stream).
#include <pybind11/pybind11.h>

#include "conv2d_args.h"

namespace medkern {

template <class Impl>
void bind_conv2d(py::module_& m) {
  using py::arg;

  m.def(
      "conv2d_forward",
      [=](py::handle x_, py::handle w_, py::handle b_, py::handle y_, int64_t sh, int64_t sw, int64_t ph,
          int64_t pw, int64_t dh, int64_t dw, int64_t groups, intptr_t stream, int activation, double slope) {
        if (activation < 0 || activation > 2) fail_value("activation: must be 0 (none), 1 (relu) or 2 (leaky_relu)");
        if (!(slope >= 0.0) || slope > 1e30) fail_value("negative_slope: must be finite and non-negative");
        TensorView x = view_of(x_, "input"), w = view_of(w_, "weight"), y = view_of(y_, "out");
        expect_device(x, Impl::device, "input");
        expect_rank(y, 4, "out");
        const ConvShape s = make_conv2d_shape(x, w, y.shape[2], y.shape[3], planar_geometry(sh, sw, ph, pw, dh, dw, groups));
        expect_same(y, x, "out");
        expect_writable(y, "out");
        expect_shape(y, {s.N, s.K, s.P, s.Q}, "out");
        TensorView b;
        const bool has_bias = !b_.is_none();
        if (has_bias) {
          b = view_of(b_, "bias");
          expect_same(b, x, "bias");
          expect_shape(b, {s.K}, "bias");
        }
        prefer_huge_pages(y);
        py::gil_scoped_release nogil;
        dispatch_float(x.dtype, [&](auto t) {
          using T = decltype(t);
          ConvArgs<T> a{};
          a.s = s; a.x = x.ptr<T>(); a.w = w.ptr<T>(); a.bias = has_bias ? b.ptr<T>() : nullptr; a.y = y.ptr<T>();
          a.act = static_cast<Activation>(activation); a.slope = static_cast<T>(slope);
          Impl::template forward<T>(a, stream);
        });
      },
      arg("input"), arg("weight"), arg("bias"), arg("out"), arg("stride_h"), arg("stride_w"), arg("pad_h"),
      arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("groups"), arg("stream") = 0, arg("activation") = 0,
      arg("negative_slope") = 0.0,
      "out = act(conv2d(input, weight) + bias), written in full into `out` (N, K, P, Q); activation 0 none, "
      "1 relu, 2 leaky_relu with negative_slope >= 0.");

  m.def(
      "conv2d_grad_input",
      [=](py::handle dy_, py::handle w_, py::handle dx_, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
          int64_t dw, int64_t groups, intptr_t stream) {
        TensorView dy = view_of(dy_, "grad_output"), w = view_of(w_, "weight"), dx = view_of(dx_, "grad_input");
        expect_device(dx, Impl::device, "grad_input");
        expect_rank(dy, 4, "grad_output");
        expect_writable(dx, "grad_input");
        const ConvShape s = make_conv2d_shape(dx, w, dy.shape[2], dy.shape[3], planar_geometry(sh, sw, ph, pw, dh, dw, groups),
                                                "grad_input");
        expect_same(dy, dx, "grad_output");
        expect_shape(dy, {s.N, s.K, s.P, s.Q}, "grad_output");
        prefer_huge_pages(dx);
        py::gil_scoped_release nogil;
        dispatch_float(dx.dtype, [&](auto t) {
          using T = decltype(t);
          ConvArgs<T> a{};
          a.s = s; a.dy = dy.ptr<T>(); a.w = w.ptr<T>(); a.dx = dx.ptr<T>();
          Impl::template grad_input<T>(a, stream);
        });
      },
      arg("grad_output"), arg("weight"), arg("grad_input"), arg("stride_h"), arg("stride_w"), arg("pad_h"),
      arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("groups"), arg("stream") = 0,
      "grad_input = d(conv2d)/d(input) applied to grad_output, written in full.");

  m.def(
      "conv2d_grad_weight",
      [=](py::handle dy_, py::handle x_, py::handle dw_, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
          int64_t dw, int64_t groups, intptr_t stream) {
        TensorView dy = view_of(dy_, "grad_output"), x = view_of(x_, "input"), dwt = view_of(dw_, "grad_weight");
        expect_device(x, Impl::device, "input");
        expect_rank(dy, 4, "grad_output");
        expect_writable(dwt, "grad_weight");
        const ConvShape s = make_conv2d_shape(x, dwt, dy.shape[2], dy.shape[3], planar_geometry(sh, sw, ph, pw, dh, dw, groups),
                                                "input", "grad_weight");
        expect_same(dy, x, "grad_output");
        expect_shape(dy, {s.N, s.K, s.P, s.Q}, "grad_output");
        py::gil_scoped_release nogil;
        dispatch_float(x.dtype, [&](auto t) {
          using T = decltype(t);
          ConvArgs<T> a{};
          a.s = s; a.dy = dy.ptr<T>(); a.x = x.ptr<T>(); a.dw = dwt.ptr<T>();
          Impl::template grad_weight<T>(a, stream);
        });
      },
      arg("grad_output"), arg("input"), arg("grad_weight"), arg("stride_h"), arg("stride_w"), arg("pad_h"),
      arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("groups"), arg("stream") = 0,
      "grad_weight = d(conv2d)/d(weight) applied to grad_output, summed over the batch, written in full.");

  m.def(
      "conv2d_grad_bias",
      [](py::handle dy_, py::handle db_, intptr_t stream) {
        TensorView dy = view_of(dy_, "grad_output"), db = view_of(db_, "grad_bias");
        expect_device(dy, Impl::device, "grad_output");
        expect_rank(dy, 4, "grad_output");
        expect_same(db, dy, "grad_bias");
        expect_writable(db, "grad_bias");
        expect_shape(db, {dy.shape[1]}, "grad_bias");
        ConvShape s{};
        s.N = dy.shape[0]; s.K = dy.shape[1]; s.P = dy.shape[2]; s.Q = dy.shape[3];
        py::gil_scoped_release nogil;
        dispatch_float(dy.dtype, [&](auto t) {
          using T = decltype(t);
          ConvArgs<T> a{};
          a.s = s; a.dy = dy.ptr<T>(); a.db = db.ptr<T>();
          Impl::template grad_bias<T>(a, stream);
        });
      },
      arg("grad_output"), arg("grad_bias"), arg("stream") = 0, "grad_bias = grad_output summed over N, P, Q.");
}

}  // namespace medkern
