#pragma once
// The batch-normalisation bindings (CPU): statistics, the affine map with its activation, and the backward.
// Tensors are dense (N, C, ...) of one float dtype; per-channel vectors are (C,). Outputs may not overlap
// the inputs.
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>
#include <deque>
#include <vector>

#include "../common/batch_norm_params.h"
#include "../cpu/batch_norm.h"
#include "tensor_view.h"

namespace medkern {

// The (N, C, S) of a dense tensor of rank 2 or more.
inline BatchNormShape batch_norm_shape(const TensorView& x, const char* name) {
  if (x.ndim < 2) fail_value(std::string(name) + ": expected rank 2 or more (N, C, ...), got " + shape_str(x));
  expect_device(x, DeviceKind::cpu, name);
  BatchNormShape s{x.shape[0], x.shape[1], 1};
  for (int i = 2; i < x.ndim; ++i) s.S *= x.shape[i];
  if (s.C < 1) fail_value(std::string(name) + ": needs at least one channel");
  if (s.count() < 1) fail_value(std::string(name) + ": needs at least one value per channel");
  return s;
}

inline Activation batch_norm_activation(int64_t code, double slope) {
  if (code < 0 || code > 2) fail_value("activation: expected 0 (none), 1 (relu) or 2 (leaky_relu)");
  if (!(slope >= 0) || !std::isfinite(slope)) fail_value("negative_slope: must be finite and non-negative");
  return static_cast<Activation>(code);
}

// Checked views of one call: every tensor given, by name, with the rules its role needs.
struct BatchNormCall {
  TensorView x;
  BatchNormShape s{};
  std::deque<TensorView> views;  // every exported array, alive while the kernel runs (a deque: stable addresses)
  std::vector<TensorView*> outputs;

  explicit BatchNormCall(py::handle x_) : x(view_of(x_, "input")), s(batch_norm_shape(x, "input")) {}

  // An optional argument (None: nullptr) like the input, or a per-channel vector.
  const TensorView* like_input(py::handle obj, const char* name, bool written = false) {
    if (obj.is_none()) return nullptr;
    views.push_back(view_of(obj, name));
    expect_like(views.back(), x, name, "input");
    return track(written, name);
  }
  const TensorView* channel(py::handle obj, const char* name, bool written = false) {
    if (obj.is_none()) return nullptr;
    views.push_back(view_of(obj, name));
    expect_same(views.back(), x, name);
    expect_shape(views.back(), {s.C}, name);
    return track(written, name);
  }

  // Outputs must not overlap any other array of the call.
  void check_overlaps() const {
    for (const TensorView* out : outputs) {
      if (overlaps(*out, x)) fail_value("an output overlaps the input");
      for (const TensorView& v : views)
        if (&v != out && overlaps(*out, v)) fail_value("outputs and inputs must not overlap");
    }
  }

 private:
  const TensorView* track(bool written, const char* name) {
    if (written) {
      expect_writable(views.back(), name);
      outputs.push_back(&views.back());
    }
    return &views.back();
  }
};

template <typename T>
T* ptr_or_null(const TensorView* v) { return v ? v->ptr<T>() : nullptr; }

inline void bind_batch_norm(py::module_& m) {
  using py::arg;

  m.def(
      "batch_norm_statistics",
      [](py::handle x_, py::handle mean_, py::handle var_) {
        BatchNormCall c(x_);
        const TensorView* mean = c.channel(mean_, "mean", true);
        const TensorView* var = c.channel(var_, "var", true);
        if (!mean || !var) fail_value("mean and var: both are required");
        c.check_overlaps();
        py::gil_scoped_release nogil;
        dispatch_float(c.x.dtype, [&](auto t) {
          using T = decltype(t);
          BatchNormArgs<T> a{};
          a.s = c.s; a.x = c.x.ptr<T>(); a.out_mean = mean->ptr<T>(); a.out_var = var->ptr<T>();
          cpu::batch_norm_statistics(a);
        });
      },
      arg("input"), arg("mean"), arg("var"),
      "Per-channel mean and biased variance of a dense (N, C, ...) tensor into the (C,) outputs.");

  m.def(
      "batch_norm_apply",
      [](py::handle x_, py::handle scale_, py::handle shift_, py::handle out_, int64_t activation, double slope) {
        BatchNormCall c(x_);
        const Activation act = batch_norm_activation(activation, slope);
        const TensorView* scale = c.channel(scale_, "scale");
        const TensorView* shift = c.channel(shift_, "shift");
        const TensorView* out = c.like_input(out_, "out", true);
        if (!scale || !shift || !out) fail_value("scale, shift and out: all are required");
        c.check_overlaps();
        prefer_huge_pages(*out);
        py::gil_scoped_release nogil;
        dispatch_float(c.x.dtype, [&](auto t) {
          using T = decltype(t);
          BatchNormArgs<T> a{};
          a.s = c.s; a.act = act; a.slope = T(slope); a.x = c.x.ptr<T>();
          a.scale = scale->ptr<T>(); a.shift = shift->ptr<T>(); a.out_y = out->ptr<T>();
          cpu::batch_norm_apply(a);
        });
      },
      arg("input"), arg("scale"), arg("shift"), arg("out"), arg("activation") = 0, arg("negative_slope") = 0.0,
      "out = act(input * scale[c] + shift[c]) per channel c.");

  m.def(
      "batch_norm_backward",
      [](py::handle dy_, py::handle x_, py::handle y_, py::handle mean_, py::handle invstd_, py::handle scale_,
         py::handle dx_, py::handle dweight_, py::handle dbias_, int64_t activation, double slope) {
        BatchNormCall c(x_);
        const Activation act = batch_norm_activation(activation, slope);
        const TensorView* dy = c.like_input(dy_, "grad_output");
        const TensorView* y = c.like_input(y_, "output");
        const TensorView* mean = c.channel(mean_, "mean");
        const TensorView* invstd = c.channel(invstd_, "invstd");
        const TensorView* scale = c.channel(scale_, "weight");
        const TensorView* dx = c.like_input(dx_, "grad_input", true);
        const TensorView* dweight = c.channel(dweight_, "grad_weight", true);
        const TensorView* dbias = c.channel(dbias_, "grad_bias", true);
        if (!dy || !mean || !invstd) fail_value("grad_output, mean and invstd: all are required");
        if (act != Activation::none && !y) fail_value("output: required with an activation");
        c.check_overlaps();
        if (dx) prefer_huge_pages(*dx);
        py::gil_scoped_release nogil;
        dispatch_float(c.x.dtype, [&](auto t) {
          using T = decltype(t);
          BatchNormArgs<T> a{};
          a.s = c.s; a.act = act; a.slope = T(slope); a.x = c.x.ptr<T>();
          a.dy = dy->ptr<T>(); a.y = act != Activation::none ? y->ptr<T>() : nullptr;
          a.mean = mean->ptr<T>(); a.invstd = invstd->ptr<T>(); a.scale = ptr_or_null<T>(scale);
          a.dx = ptr_or_null<T>(dx); a.dweight = ptr_or_null<T>(dweight); a.dbias = ptr_or_null<T>(dbias);
          cpu::batch_norm_backward(a);
        });
      },
      arg("grad_output"), arg("input"), arg("output"), arg("mean"), arg("invstd"), arg("weight"), arg("grad_input"),
      arg("grad_weight"), arg("grad_bias"), arg("activation") = 0, arg("negative_slope") = 0.0,
      "Backward of out = act((input - mean) * invstd * weight + bias) with batch statistics; output (the "
      "forward's) is needed with an activation; grad_input, grad_weight and grad_bias are written where given.");
}

}  // namespace medkern
