#pragma once
// The GAN loss bindings, written once for both modules. `Impl` supplies one device's kernels:
//   static constexpr DeviceKind device;
//   template <class T> static void loss_forward(const GanLossArgs<T>&, intptr_t stream);
//   template <class T> static void penalty_forward(const GanPenaltyArgs<T>&, intptr_t stream);
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "../common/gan_loss_params.h"
#include "tensor_view.h"

namespace medkern {

inline int64_t gan_loss_workspace_size(int64_t N, int64_t M) { return gan_loss_workspace(N, M); }
inline int64_t gan_penalty_workspace_size(int64_t N, int64_t M) { return N * gan_chunks_per_sample(M); }

// (N, M) of an (N, ...) array: N samples of M elements each.
inline void samples_of(const TensorView& v, const char* name, int64_t& N, int64_t& M) {
  if (v.ndim < 1) fail_value(std::string(name) + ": expected at least one dimension (the samples)");
  N = v.shape[0];
  if (N < 1 || v.numel() < 1) fail_value(std::string(name) + ": must not be empty");
  M = v.numel() / N;
}

inline GanSide gan_side(int term, double param, bool present, const char* name) {
  if (term < kGanTermNone || term > kGanTermLinear) fail_value(std::string(name) + "_term: unknown term " + std::to_string(term));
  if ((term != kGanTermNone) != present)
    fail_value(std::string(name) + ": must be given exactly when its term is not 0 (none)");
  return {term, param};
}

// The workspace argument: the caller's array of `size` elements, or None on the CPU, where the binding
// uses host memory of its own (a tensor allocation and a size query cost more than a small loss's kernel).
template <class Impl>
TensorView workspace_view(py::handle h, const TensorView& ref, int64_t size) {
  if (h.is_none()) {
    if (Impl::device != DeviceKind::cpu) fail_value("workspace: required on the GPU");
    return TensorView{};
  }
  TensorView w = view_of(h, "workspace");
  expect_output(w, ref, {size}, "workspace");
  return w;
}

// A workspace pointer: the given array's, or `host` sized to `size`.
template <typename T>
T* workspace_ptr(const TensorView& w, std::vector<T>& host, int64_t size) {
  if (w.data) return w.ptr<T>();
  host.resize(static_cast<size_t>(size));
  return host.data();
}

template <class Impl>
void bind_gan_loss(py::module_& m) {
  using py::arg;

  m.def(
      "gan_loss_forward",
      [](py::handle real_, py::handle fake_, py::handle weight_, py::handle per_sample_, py::handle total_,
         py::handle d_real_, py::handle d_fake_, py::handle dsum_real_, py::handle dsum_fake_, py::handle workspace_,
         int real_term, double real_param, int fake_term, double fake_param, bool relativistic, double scale,
         intptr_t stream) {
        TensorView real, fake, weight, d_real, d_fake, dsum_real, dsum_fake;
        if (!real_.is_none()) real = view_of(real_, "real");
        if (!fake_.is_none()) fake = view_of(fake_, "fake");
        if (real_.is_none() && fake_.is_none()) fail_value("real, fake: at least one side must be given");
        const TensorView& ref = real_.is_none() ? fake : real;
        const char* ref_name = real_.is_none() ? "fake" : "real";
        expect_device(ref, Impl::device, ref_name);
        if (!real_.is_none() && !fake_.is_none()) expect_like(fake, real, "fake", "real");
        GanLossShape s{};
        samples_of(ref, ref_name, s.N, s.M);
        s.real = gan_side(real_term, real_param, !real_.is_none(), "real");
        s.fake = gan_side(fake_term, fake_param, !fake_.is_none(), "fake");
        s.relativistic = relativistic;
        s.scale = scale;
        if (relativistic && (real_.is_none() || fake_.is_none()))
          fail_value("relativistic: needs both real and fake");
        if (!weight_.is_none()) {
          weight = view_of(weight_, "weight");
          expect_same(weight, ref, "weight");
          expect_shape(weight, {s.N}, "weight");
        }
        TensorView per_sample = view_of(per_sample_, "per_sample"), total = view_of(total_, "total");
        expect_output(per_sample, ref, {s.N}, "per_sample");
        expect_output(total, ref, {}, "total");
        const int64_t ws_size = gan_loss_workspace_size(s.N, s.M);
        const TensorView workspace = workspace_view<Impl>(workspace_, ref, ws_size);
        if (!d_real_.is_none()) {
          if (real_.is_none()) fail_value("d_real: given without real");
          d_real = view_of(d_real_, "d_real");
          expect_like(d_real, real, "d_real", "real");
          expect_writable(d_real, "d_real");
        }
        if (!d_fake_.is_none()) {
          if (fake_.is_none()) fail_value("d_fake: given without fake");
          d_fake = view_of(d_fake_, "d_fake");
          expect_like(d_fake, fake, "d_fake", "fake");
          expect_writable(d_fake, "d_fake");
        }
        if (dsum_real_.is_none() != dsum_fake_.is_none() || (!dsum_real_.is_none() && !relativistic))
          fail_value("dsum_real, dsum_fake: give both, and only for a relativistic loss");
        if (!dsum_real_.is_none()) {
          dsum_real = view_of(dsum_real_, "dsum_real");
          dsum_fake = view_of(dsum_fake_, "dsum_fake");
          expect_output(dsum_real, ref, {s.N}, "dsum_real");
          expect_output(dsum_fake, ref, {s.N}, "dsum_fake");
        }
        py::gil_scoped_release nogil;
        dispatch_float(ref.dtype, [&](auto t) {
          using T = decltype(t);
          std::vector<T> host_workspace;
          GanLossArgs<T> a{};
          a.s = s;
          a.real = real.ptr<T>(); a.fake = fake.ptr<T>(); a.weight = weight.ptr<T>();
          a.per_sample = per_sample.ptr<T>(); a.total = total.ptr<T>();
          a.workspace = workspace_ptr(workspace, host_workspace, ws_size);
          a.d_real = d_real.ptr<T>(); a.d_fake = d_fake.ptr<T>();
          a.dsum_real = dsum_real.ptr<T>(); a.dsum_fake = dsum_fake.ptr<T>();
          Impl::template loss_forward<T>(a, stream);
        });
      },
      arg("real"), arg("fake"), arg("weight"), arg("per_sample"), arg("total"), arg("d_real"), arg("d_fake"),
      arg("dsum_real"), arg("dsum_fake"), arg("workspace"), arg("real_term"), arg("real_param"), arg("fake_term"),
      arg("fake_param"), arg("relativistic"), arg("scale"), arg("stream") = 0,
      "One GAN loss over (N, ...) outputs: per-sample losses, their total and the input gradients in one pass\n"
      "(see csrc/common/gan_loss_params.h). Absent sides and unwanted outputs are None, and so may be the\n"
      "workspace on the CPU.");

  m.def(
      "gan_penalty_forward",
      [](py::handle g_, py::handle per_sample_, py::handle total_, py::handle coef_, py::handle workspace_,
         double center, double scale, intptr_t stream) {
        TensorView g = view_of(g_, "grad");
        expect_device(g, Impl::device, "grad");
        GanPenaltyShape s{};
        samples_of(g, "grad", s.N, s.M);
        s.center = center;
        s.scale = scale;
        TensorView per_sample = view_of(per_sample_, "per_sample"), total = view_of(total_, "total"),
                   coef = view_of(coef_, "coef");
        expect_output(per_sample, g, {s.N}, "per_sample");
        expect_output(total, g, {}, "total");
        expect_output(coef, g, {s.N}, "coef");
        const int64_t ws_size = gan_penalty_workspace_size(s.N, s.M);
        const TensorView workspace = workspace_view<Impl>(workspace_, g, ws_size);
        py::gil_scoped_release nogil;
        dispatch_float(g.dtype, [&](auto t) {
          using T = decltype(t);
          std::vector<T> host_workspace;
          GanPenaltyArgs<T> a{};
          a.s = s;
          a.g = g.ptr<T>(); a.per_sample = per_sample.ptr<T>(); a.total = total.ptr<T>(); a.coef = coef.ptr<T>();
          a.workspace = workspace_ptr(workspace, host_workspace, ws_size);
          Impl::template penalty_forward<T>(a, stream);
        });
      },
      arg("grad"), arg("per_sample"), arg("total"), arg("coef"), arg("workspace"), arg("center"), arg("scale"),
      arg("stream") = 0,
      "A gradient penalty from the critic's input gradient: per-sample penalties, their total and the\n"
      "per-sample coefficients of its gradient (see GanPenaltyShape).");

  m.def("gan_loss_workspace_size", &gan_loss_workspace_size, arg("N"), arg("M"));
  m.def("gan_penalty_workspace_size", &gan_penalty_workspace_size, arg("N"), arg("M"));
}

}  // namespace medkern
