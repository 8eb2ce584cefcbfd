#pragma once
// The volume pooling bindings (CPU module). Volumes are (N, C, D, H, W); geometry arguments come per axis
// (depth, height, width). The max-pool backward of a volume is max_pool2d_backward over (N, C, 1, D*H*W) views.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <string>

#include "../common/pool3d_params.h"
#include "../cpu/pool3d.h"
#include "tensor_view.h"

namespace medkern {

using Axes3 = std::array<int64_t, 3>;

// The checked views of one call: the volumes read and written (x and y forward, dy and dx backward), indices.
struct Pool3dCall {
  TensorView x, y, dy, dx, indices;
  Pool3dShape s{};

  // `in` (N, C, D, H, W) and `out` (N, C, O, P, Q): the same batch and channels, dtype and device; `written`
  // is the one the kernel writes.
  void set_volumes(const TensorView& in, const TensorView& out, const char* in_name, const char* out_name,
                   const TensorView& written, const char* written_name) {
    expect_device(in, DeviceKind::cpu, in_name);
    expect_rank(in, 5, in_name);
    expect_rank(out, 5, out_name);
    expect_same(out, in, out_name);
    expect_writable(written, written_name);
    if (in.shape[0] != out.shape[0] || in.shape[1] != out.shape[1])
      fail_value(std::string(out_name) + ": batch and channel sizes must match " + in_name + "'s, got " +
                 shape_str(out) + " for " + shape_str(in));
    s.volumes = in.shape[0] * in.shape[1];
    constexpr int64_t kMaxDim = int64_t(1) << 31;
    for (int i = 0; i < 3; ++i) {
      s.in[i] = in.shape[2 + i];
      s.out[i] = out.shape[2 + i];
      if (s.in[i] < 1) fail_value(std::string(in_name) + ": every size must be positive");
      if (s.out[i] < 1) fail_value(std::string(out_name) + ": output size must be positive");
      if (s.in[i] > kMaxDim || s.out[i] > kMaxDim) fail_value("a dimension of 2^31 or more is not supported");
    }
    if (s.volumes < 1) fail_value(std::string(in_name) + ": every size must be positive");
  }

  // torch's window rules: padding at most half the (dilated) window, the last window starting inside the
  // input or its leading padding.
  void set_window(const Axes3& k, const Axes3& st, const Axes3& pad, const Axes3& dil) {
    constexpr int64_t kMax = int64_t(1) << 30;
    for (int i = 0; i < 3; ++i) {
      if (k[i] < 1 || k[i] > kMax) fail_value("kernel_size: must be positive");
      if (st[i] < 1 || st[i] > kMax) fail_value("stride: must be positive");
      if (dil[i] < 1 || dil[i] > kMax) fail_value("dilation: must be positive");
      if (pad[i] < 0 || 2 * pad[i] > (k[i] - 1) * dil[i] + 1)
        fail_value("padding: must be non-negative and at most half of the effective kernel size");
      if ((s.out[i] - 1) * st[i] - pad[i] >= s.in[i]) fail_value("output size: the last window would start past the input");
      s.k[i] = k[i]; s.s[i] = st[i]; s.p[i] = pad[i]; s.d[i] = dil[i];
    }
  }

  // Average pooling's window (no dilation) and torch's divisor rules (divisor_override 0: none).
  void set_average_window(const Axes3& k, const Axes3& st, const Axes3& pad, bool count_include_pad,
                          int64_t divisor_override) {
    set_window(k, st, pad, {1, 1, 1});
    s.count_include_pad = count_include_pad;
    s.divisor_override = divisor_override;
  }

  void set_indices(py::handle obj) {
    indices = view_of(obj, "indices", Holds::indices);
    expect_same_device(indices, y, "indices");
    expect_writable(indices, "indices");
    expect_shape(indices, {y.shape[0], y.shape[1], s.out[0], s.out[1], s.out[2]}, "indices");
  }

  template <class Kernel>
  void run(Kernel&& kernel) const {
    py::gil_scoped_release nogil;
    dispatch_float(dx.data ? dx.dtype : x.dtype, [&](auto t) {
      using T = decltype(t);
      Pool3dArgs<T> a{};
      a.s = s; a.x = x.ptr<T>(); a.y = y.ptr<T>(); a.dy = dy.ptr<T>(); a.dx = dx.ptr<T>();
      a.indices = indices.ptr<int64_t>();
      kernel(a);
    });
  }
};

inline Pool3dCall pool3d_forward_call(py::handle x_, py::handle y_) {
  Pool3dCall c;
  c.x = view_of(x_, "input");
  c.y = view_of(y_, "out");
  c.set_volumes(c.x, c.y, "input", "out", c.y, "out");
  return c;
}

inline Pool3dCall pool3d_backward_call(py::handle dy_, py::handle dx_) {
  Pool3dCall c;
  c.dy = view_of(dy_, "grad_output");
  c.dx = view_of(dx_, "grad_input");
  c.set_volumes(c.dx, c.dy, "grad_input", "grad_output", c.dx, "grad_input");
  return c;
}

inline void bind_pool3d(py::module_& m) {
  using py::arg;
  m.def(
      "max_pool3d_forward",
      [](py::handle x_, py::handle y_, py::handle idx_, const Axes3& k, const Axes3& st, const Axes3& pad,
         const Axes3& dil) {
        Pool3dCall c = pool3d_forward_call(x_, y_);
        c.set_window(k, st, pad, dil);
        if (!idx_.is_none()) c.set_indices(idx_);
        c.run([](auto& a) { cpu::max_pool3d_forward(a); });
      },
      arg("input"), arg("out"), arg("indices"), arg("kernel"), arg("stride"), arg("padding"), arg("dilation"),
      "Max pooling of volumes; indices (flat (d*H+h)*W+w within each volume) are written when given.");
  m.def(
      "avg_pool3d_forward",
      [](py::handle x_, py::handle y_, const Axes3& k, const Axes3& st, const Axes3& pad, bool count_include_pad,
         int64_t divisor_override) {
        Pool3dCall c = pool3d_forward_call(x_, y_);
        c.set_average_window(k, st, pad, count_include_pad, divisor_override);
        c.run([](auto& a) { cpu::avg_pool3d_forward(a); });
      },
      arg("input"), arg("out"), arg("kernel"), arg("stride"), arg("padding"), arg("count_include_pad"),
      arg("divisor_override"), "Average pooling of volumes with torch's divisor rules (divisor_override 0: none).");
  m.def(
      "avg_pool3d_backward",
      [](py::handle dy_, py::handle dx_, const Axes3& k, const Axes3& st, const Axes3& pad, bool count_include_pad,
         int64_t divisor_override) {
        Pool3dCall c = pool3d_backward_call(dy_, dx_);
        c.set_average_window(k, st, pad, count_include_pad, divisor_override);
        c.run([](auto& a) { cpu::avg_pool3d_backward(a); });
      },
      arg("grad_output"), arg("grad_input"), arg("kernel"), arg("stride"), arg("padding"), arg("count_include_pad"),
      arg("divisor_override"));
  m.def(
      "adaptive_avg_pool3d_forward",
      [](py::handle x_, py::handle y_) { pool3d_forward_call(x_, y_).run([](auto& a) { cpu::adaptive_avg_pool3d_forward(a); }); },
      arg("input"), arg("out"), "Adaptive average pooling of volumes to out's spatial size.");
  m.def(
      "adaptive_avg_pool3d_backward",
      [](py::handle dy_, py::handle dx_) {
        pool3d_backward_call(dy_, dx_).run([](auto& a) { cpu::adaptive_avg_pool3d_backward(a); });
      },
      arg("grad_output"), arg("grad_input"));
  m.def(
      "adaptive_max_pool3d_forward",
      [](py::handle x_, py::handle y_, py::handle idx_) {
        Pool3dCall c = pool3d_forward_call(x_, y_);
        c.set_indices(idx_);
        c.run([](auto& a) { cpu::adaptive_max_pool3d_forward(a); });
      },
      arg("input"), arg("out"), arg("indices"), "Adaptive max pooling of volumes with indices.");
}

}  // namespace medkern
