#pragma once
// The pooling bindings, written once for both modules. `Impl` supplies one device's kernels:
//   static constexpr DeviceKind device;
//   template <class T> static void max_forward / avg_forward / avg_backward / adaptive_avg_forward /
//       adaptive_avg_backward / adaptive_max_forward(const Pool2dArgs<T>&, intptr_t stream);
//   template <class T> static int64_t max_backward(const Pool2dArgs<T>&, intptr_t stream);
//       (returns how many indices were out of range and skipped; the binding then raises)
#include <pybind11/pybind11.h>

#include <string>
#include <type_traits>

#include "../common/pool2d_params.h"
#include "tensor_view.h"

namespace medkern {

// Input planes (N, C, H, W) and output planes (N, C, P, Q) of one pooling call.
inline Pool2dShape pool_planes(const TensorView& in, const TensorView& out, const char* in_name,
                               const char* out_name) {
  expect_rank(in, 4, in_name);
  expect_rank(out, 4, out_name);
  expect_same(out, in, out_name);
  expect_writable(out, out_name);
  if (in.shape[0] != out.shape[0] || in.shape[1] != out.shape[1])
    fail_value(std::string(out_name) + ": batch and channel sizes must match " + in_name + "'s, got " +
               shape_str(out) + " for " + shape_str(in));
  Pool2dShape s{};
  s.planes = in.shape[0] * in.shape[1];
  s.H = in.shape[2]; s.W = in.shape[3]; s.P = out.shape[2]; s.Q = out.shape[3];
  if (s.planes < 1 || s.H < 1 || s.W < 1) fail_value(std::string(in_name) + ": every size must be positive");
  if (s.P < 1 || s.Q < 1) fail_value(std::string(out_name) + ": output size must be positive");
  constexpr int64_t kMaxDim = int64_t(1) << 31;
  for (int64_t d : {s.H, s.W, s.P, s.Q})
    if (d > kMaxDim) fail_value("a dimension of 2^31 or more is not supported");
  return s;
}

// Window geometry, with torch's rule that padding is at most half the (dilated) window, which keeps
// every window overlapping the input.
inline void set_window(Pool2dShape& s, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                       int64_t dh, int64_t dw) {
  constexpr int64_t kMax = int64_t(1) << 30;
  if (kh < 1 || kw < 1 || kh > kMax || kw > kMax) fail_value("kernel_size: must be positive");
  if (sh < 1 || sw < 1 || sh > kMax || sw > kMax) fail_value("stride: must be positive");
  if (dh < 1 || dw < 1 || dh > kMax || dw > kMax) fail_value("dilation: must be positive");
  if (ph < 0 || pw < 0 || 2 * ph > (kh - 1) * dh + 1 || 2 * pw > (kw - 1) * dw + 1)
    fail_value("padding: must be non-negative and at most half of the effective kernel size");
  if ((s.P - 1) * sh - ph >= s.H || (s.Q - 1) * sw - pw >= s.W)
    fail_value("output size: the last window would start past the input");
  s.kh = kh; s.kw = kw; s.sh = sh; s.sw = sw; s.ph = ph; s.pw = pw; s.dh = dh; s.dw = dw;
}

// Whether a device implements the fused max-pool backward from the input (the CPU does; elsewhere the
// Python backend composes the indexed forward and backward).
inline void set_average_window(Pool2dShape& s, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                               int64_t pw, bool count_include_pad, int64_t divisor_override) {
  set_window(s, kh, kw, sh, sw, ph, pw, 1, 1);
  s.count_include_pad = count_include_pad;
  s.divisor_override = divisor_override;
}

template <class Impl, class = void>
struct has_backward_from_input : std::false_type {};
template <class Impl>
struct has_backward_from_input<Impl, std::void_t<decltype(&Impl::template max_backward_from_input<float>)>>
    : std::true_type {};

// The views of one pooling call, checked: an input and an output plane set (x and y forward, dx and dy
// backward; the device is checked on the side the kernel writes or reads first), plus optional indices.
// run() is the common tail of every binding: with the GIL released, the kernel gets a Pool2dArgs whose
// pointers are those of the views present (absent ones are null).
struct PoolCall {
  TensorView x, y, dy, dx, indices, indices_in;
  Pool2dShape s{};

  template <class Impl>
  static PoolCall forward(py::handle x_, py::handle y_) {
    PoolCall c;
    c.x = view_of(x_, "input");
    c.y = view_of(y_, "out");
    expect_device(c.x, Impl::device, "input");
    c.s = pool_planes(c.x, c.y, "input", "out");
    return c;
  }

  template <class Impl>
  static PoolCall backward(py::handle dy_, py::handle dx_) {
    PoolCall c;
    c.dy = view_of(dy_, "grad_output");
    c.dx = view_of(dx_, "grad_input");
    expect_device(c.dx, Impl::device, "grad_input");
    c.s = pool_planes(c.dx, c.dy, "grad_input", "grad_output");
    return c;
  }

  // Indices the shape of the pooled planes, on the data's device.
  TensorView& index_view(py::handle obj, TensorView& slot, const TensorView& like, const char* name, bool written) {
    slot = view_of(obj, name, Holds::indices);
    expect_same_device(slot, like, name);
    if (written) expect_writable(slot, name);
    expect_shape(slot, {like.shape[0], like.shape[1], s.P, s.Q}, name);
    return slot;
  }

  template <class Kernel>
  void run(Kernel&& kernel) const {
    prefer_huge_pages(dx.data ? dx : y);
    py::gil_scoped_release nogil;
    dispatch_float(dx.data ? dx.dtype : x.dtype, [&](auto t) {
      using T = decltype(t);
      Pool2dArgs<T> a{};
      a.s = s; a.x = x.ptr<T>(); a.y = y.ptr<T>(); a.dy = dy.ptr<T>(); a.dx = dx.ptr<T>();
      a.indices = indices.ptr<int64_t>(); a.indices_in = indices_in.ptr<int64_t>();
      kernel(a);
    });
  }
};

template <class Impl>
void bind_pool2d(py::module_& m) {
  using py::arg;

  m.def(
      "max_pool2d_forward",
      [](py::handle x_, py::handle y_, py::handle idx_, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
         int64_t pw, int64_t dh, int64_t dw, intptr_t stream) {
        PoolCall c = PoolCall::forward<Impl>(x_, y_);
        set_window(c.s, kh, kw, sh, sw, ph, pw, dh, dw);
        if (!idx_.is_none()) prefer_huge_pages(c.index_view(idx_, c.indices, c.y, "indices", true));
        c.run([&](auto& a) { Impl::template max_forward<elem_t<decltype(a)>>(a, stream); });
      },
      arg("input"), arg("out"), arg("indices"), arg("kernel_h"), arg("kernel_w"), arg("stride_h"), arg("stride_w"),
      arg("pad_h"), arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("stream") = 0,
      "Max pooling; indices (flat h*W+w within each plane, torch's convention) are written when given.");

  m.def(
      "max_pool2d_backward",
      [](py::handle dy_, py::handle idx_, py::handle dx_, intptr_t stream) {
        PoolCall c = PoolCall::backward<Impl>(dy_, dx_);
        c.index_view(idx_, c.indices_in, c.dy, "indices", false);
        int64_t bad = 0;
        c.run([&](auto& a) { bad = Impl::template max_backward<elem_t<decltype(a)>>(a, stream); });
        if (bad) fail_value("indices: " + std::to_string(bad) + " value(s) outside [0, H*W) of the input plane");
      },
      arg("grad_output"), arg("indices"), arg("grad_input"), arg("stream") = 0,
      "grad_input = 0, then grad_input[plane, indices] += grad_output (max and adaptive max pooling).");

  if constexpr (has_backward_from_input<Impl>::value) m.def(
      "max_pool2d_backward_from_input",
      [](py::handle dy_, py::handle x_, py::handle dx_, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
         int64_t pw, int64_t dh, int64_t dw, intptr_t stream) {
        PoolCall c;
        c.dy = view_of(dy_, "grad_output");
        c.x = view_of(x_, "input");
        c.dx = view_of(dx_, "grad_input");
        expect_device(c.x, Impl::device, "input");
        c.s = pool_planes(c.x, c.dy, "input", "grad_output");
        set_window(c.s, kh, kw, sh, sw, ph, pw, dh, dw);
        expect_same(c.dx, c.x, "grad_input");
        expect_writable(c.dx, "grad_input");
        expect_shape(c.dx, {c.x.shape[0], c.x.shape[1], c.s.H, c.s.W}, "grad_input");
        c.run([&](auto& a) { Impl::template max_backward_from_input<elem_t<decltype(a)>>(a, stream); });
      },
      arg("grad_output"), arg("input"), arg("grad_input"), arg("kernel_h"), arg("kernel_w"), arg("stride_h"),
      arg("stride_w"), arg("pad_h"), arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("stream") = 0,
      "Max-pool gradient from the input instead of stored indices (the same winners as torch's).");

  m.def(
      "avg_pool2d_forward",
      [](py::handle x_, py::handle y_, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
         bool count_include_pad, int64_t divisor_override, intptr_t stream) {
        PoolCall c = PoolCall::forward<Impl>(x_, y_);
        set_average_window(c.s, kh, kw, sh, sw, ph, pw, count_include_pad, divisor_override);
        c.run([&](auto& a) { Impl::template avg_forward<elem_t<decltype(a)>>(a, stream); });
      },
      arg("input"), arg("out"), arg("kernel_h"), arg("kernel_w"), arg("stride_h"), arg("stride_w"), arg("pad_h"),
      arg("pad_w"), arg("count_include_pad"), arg("divisor_override"), arg("stream") = 0,
      "Average pooling with torch's divisor rules (divisor_override 0 means none; any other value, negative\n"
      "included as in torch, divides every window).");

  m.def(
      "avg_pool2d_backward",
      [](py::handle dy_, py::handle dx_, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
         bool count_include_pad, int64_t divisor_override, intptr_t stream) {
        PoolCall c = PoolCall::backward<Impl>(dy_, dx_);
        set_average_window(c.s, kh, kw, sh, sw, ph, pw, count_include_pad, divisor_override);
        c.run([&](auto& a) { Impl::template avg_backward<elem_t<decltype(a)>>(a, stream); });
      },
      arg("grad_output"), arg("grad_input"), arg("kernel_h"), arg("kernel_w"), arg("stride_h"), arg("stride_w"),
      arg("pad_h"), arg("pad_w"), arg("count_include_pad"), arg("divisor_override"), arg("stream") = 0);

  m.def(
      "adaptive_avg_pool2d_forward",
      [](py::handle x_, py::handle y_, intptr_t stream) {
        PoolCall::forward<Impl>(x_, y_).run(
            [&](auto& a) { Impl::template adaptive_avg_forward<elem_t<decltype(a)>>(a, stream); });
      },
      arg("input"), arg("out"), arg("stream") = 0, "Adaptive average pooling to out's spatial size.");

  m.def(
      "adaptive_avg_pool2d_backward",
      [](py::handle dy_, py::handle dx_, intptr_t stream) {
        PoolCall::backward<Impl>(dy_, dx_).run(
            [&](auto& a) { Impl::template adaptive_avg_backward<elem_t<decltype(a)>>(a, stream); });
      },
      arg("grad_output"), arg("grad_input"), arg("stream") = 0);

  m.def(
      "adaptive_max_pool2d_forward",
      [](py::handle x_, py::handle y_, py::handle idx_, intptr_t stream) {
        PoolCall c = PoolCall::forward<Impl>(x_, y_);
        c.index_view(idx_, c.indices, c.y, "indices", true);
        c.run([&](auto& a) { Impl::template adaptive_max_forward<elem_t<decltype(a)>>(a, stream); });
      },
      arg("input"), arg("out"), arg("indices"), arg("stream") = 0, "Adaptive max pooling with indices.");
}

}  // namespace medkern
