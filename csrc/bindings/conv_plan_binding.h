#pragma once
// The convolution planner, seen from Python: which path a call takes (medkern.ops.conv_plan), which paths
// apply to it (the tests run each), and the forced path (MEDKERN_CONV_PATH, medkern.ops.force_conv_path).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <stdexcept>
#include <string>

#include "../cpu/conv_plan.h"
#include "conv_args.h"

namespace medkern {

inline cpu::ConvDirection direction_named(const std::string& d) {
  if (d == "forward") return cpu::ConvDirection::forward;
  if (d == "grad_input") return cpu::ConvDirection::grad_input;
  if (d == "grad_weight") return cpu::ConvDirection::grad_weight;
  fail_value("direction: expected 'forward', 'grad_input' or 'grad_weight', got '" + d + "'");
}

inline void bind_conv_plan(py::module_& m) {
  using py::arg;
  using Ext5 = std::array<int64_t, 5>;
  using Ext3 = std::array<int64_t, 3>;
  const auto shape = [](const Ext5& x, const Ext5& w, const Ext3& out, const Ext3& stride, const Ext3& pad,
                        const Ext3& dil, int64_t groups) {
    return make_conv_shape(x, w, out, ConvGeometry{stride, pad, dil, groups});
  };
  m.def(
      "conv_plan",
      [=](const std::string& direction, const Ext5& x, const Ext5& w, const Ext3& out, const Ext3& stride,
          const Ext3& pad, const Ext3& dil, int64_t groups, bool double_precision, bool weights_packed) {
        const ConvShape s = shape(x, w, out, stride, pad, dil, groups);
        return cpu::plan_name(cpu::plan_conv(direction_named(direction), s, double_precision, weights_packed));
      },
      arg("direction"), arg("input"), arg("weight"), arg("output"), arg("stride"), arg("padding"), arg("dilation"),
      arg("groups"), arg("double_precision"), arg("weights_packed") = false,
      "The CPU path a convolution takes: input (N, C, D, H, W), weight (K, C/groups, T, R, S), output extents "
      "(O, P, Q), per-axis stride, leading padding and dilation (depth, height, width).");
  m.def(
      "conv_plans",
      [=](const std::string& direction, const Ext5& x, const Ext5& w, const Ext3& out, const Ext3& stride,
          const Ext3& pad, const Ext3& dil, int64_t groups, bool double_precision) {
        const ConvShape s = shape(x, w, out, stride, pad, dil, groups);
        return cpu::applicable_plans(direction_named(direction), s, double_precision);
      },
      arg("direction"), arg("input"), arg("weight"), arg("output"), arg("stride"), arg("padding"), arg("dilation"),
      arg("groups"), arg("double_precision"), "Every plan that applies to the convolution (what may be forced).");
  m.def("conv_force_path", &cpu::force_conv_path, arg("spec"),
        "Force a convolution path by name ('grid', 'as_forward>gemm'); '' lets the planner choose again.");
  m.def("conv_forced_path", &cpu::forced_conv_path, "The forced convolution path, '' when none.");
}

}  // namespace medkern
