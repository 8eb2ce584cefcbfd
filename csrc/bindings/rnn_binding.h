#pragma once
#include <array>
// The recurrent bindings, written once for both modules. `Impl` supplies one device's kernels:
//   static constexpr DeviceKind device;
//   template <class T> static void lstm_forward / lstm_backward / gru_forward / gru_backward(
//       const RnnArgs<T>&, intptr_t stream);
// and, optionally (the CPU), the unpacked single-step cells lstm_cell / gru_cell(const RnnCellArgs<T>&),
// input_projection<T>(M, K, N, x, w, bias, out) / input_projection_backward / matmul, and with them
//   static constexpr int64_t narrow_input;  // the projections' one-pass bound (cpu::kNarrowInput)
// which the module exports as `rnn_narrow_input` (python/medkern/ops/rnn.py picks the projection's
// backward by it, so Python and C++ share the one value).
//
// gx/dgx ([T, B, X]) and out/dout ([T, B, Y]) may be wider than one direction needs: a direction reads
// and writes its columns from `gx_offset` / `out_offset`, so both directions share one input projection
// and one output tensor.
#include <pybind11/pybind11.h>

#include <string>
#include <type_traits>
#include <vector>

#include "../common/rnn_params.h"
#include "tensor_view.h"

namespace medkern {

struct RnnViews {
  TensorView gx, w_hh, w_hr, b_hh, lengths, out, hs, cs, gates, hraw, dout, dhn, dcn, dgx, dgh, dhp, dh0, dc0;
  RnnShape s{};
  int64_t gx_offset = 0, out_offset = 0;
  bool lstm = true;
};

inline TensorView optional_view(py::handle h, const char* name, Holds holds = Holds::floats) {
  return h.is_none() ? TensorView{} : view_of(h, name, holds);
}

// Checks every given view against the shape implied by gx (or dgx), w_hh and w_hr, on `device`.
inline void check_rnn(RnnViews& v, const TensorView& seq, const char* seq_name, DeviceKind device) {
  expect_device(seq, device, seq_name);
  expect_rank(seq, 3, seq_name);
  expect_rank(v.w_hh, 2, "w_hh");
  expect_same(v.w_hh, seq, "w_hh");
  const int64_t gates = v.lstm ? 4 : 3;
  RnnShape& s = v.s;
  s.T = seq.shape[0];
  s.B = seq.shape[1];
  s.H = v.w_hh.shape[0] / gates;
  s.P = v.w_hh.shape[1];
  if (s.T < 1 || s.B < 1 || s.H < 1 || v.w_hh.shape[0] != gates * s.H)
    fail_value("w_hh: expected shape (" + std::to_string(gates) + " * hidden_size, state size) with positive sizes, "
               "got " + shape_str(v.w_hh) + " (and sequence " + shape_str(seq) + ")");
  s.has_proj = v.w_hr.data != nullptr;
  if (s.has_proj) {
    expect_same(v.w_hr, seq, "w_hr");
    expect_shape(v.w_hr, {s.P, s.H}, "w_hr");
  } else if (s.P != s.H) {
    fail_value("w_hh: expected " + std::to_string(s.H) + " columns without a projection, got " + shape_str(v.w_hh));
  }
  if (v.gx_offset < 0 || v.gx_offset + gates * s.H > seq.shape[2])
    fail_value(std::string(seq_name) + ": gx_offset leaves fewer than " + std::to_string(gates * s.H) + " columns");
  s.ldgx = seq.shape[2];
  const TensorView& o = v.out.data ? v.out : v.dout;
  const char* o_name = v.out.data ? "out" : "grad_out";
  expect_same(o, seq, o_name);
  expect_rank(o, 3, o_name);
  if (o.shape[0] != s.T || o.shape[1] != s.B || v.out_offset < 0 || v.out_offset + s.P > o.shape[2])
    fail_value(std::string(o_name) + ": expected (T, B, >= out_offset + " + std::to_string(s.P) + "), got " +
               shape_str(o));
  s.ldo = o.shape[2];
  auto need = [&](const TensorView& t, std::initializer_list<int64_t> shape, const char* name, bool writable) {
    if (!t.data && t.ndim == 0) fail_value(std::string(name) + ": required");
    expect_same(t, seq, name);
    expect_shape(t, shape, name);
    if (writable) expect_writable(t, name);
  };
  need(v.hs, {s.T + 1, s.B, s.P}, "hs", v.out.data != nullptr);
  if (v.lstm) need(v.cs, {s.T + 1, s.B, s.H}, "cs", v.out.data != nullptr);
  if (v.gates.data) need(v.gates, {s.T, s.B, 4 * s.H}, "gates", v.out.data != nullptr);
  if (v.hraw.data) need(v.hraw, {s.T, s.B, s.H}, "hraw", v.out.data != nullptr);
  if (v.b_hh.data) need(v.b_hh, {gates * s.H}, "b_hh", false);
  if (v.lengths.data) {
    expect_same_device(v.lengths, seq, "lengths");
    expect_shape(v.lengths, {s.B}, "lengths");
  }
  if (v.out.data) {
    expect_writable(v.out, "out");
    return;
  }
  // backward
  need(v.dhn, {s.B, s.P}, "grad_hn", false);
  if (v.lstm) need(v.dcn, {s.B, s.H}, "grad_cn", false);
  if (!v.gates.data) fail_value("gates: required for the backward pass");
  if (s.has_proj && !v.hraw.data) fail_value("hraw: required for the backward pass with a projection");
  expect_writable(v.dgx, "grad_gx");
  need(v.dh0, {s.B, s.P}, "grad_h0", true);
  if (v.lstm) need(v.dc0, {s.B, s.H}, "grad_c0", true);
  if (!v.lstm) need(v.dgh, {s.T, s.B, 3 * s.H}, "grad_gh", true);
  if (s.has_proj) need(v.dhp, {s.T, s.B, s.P}, "grad_hp", true);
}

template <typename T>
RnnArgs<T> rnn_args(const RnnViews& v) {
  auto p = [](const TensorView& t) { return t.data ? t.ptr<T>() : nullptr; };
  RnnArgs<T> a{};
  a.s = v.s;
  a.gx = v.gx.data ? v.gx.ptr<T>() + v.gx_offset : nullptr;
  a.w_hh = p(v.w_hh); a.b_hh = p(v.b_hh); a.w_hr = p(v.w_hr);
  a.lengths = v.lengths.data ? v.lengths.ptr<int64_t>() : nullptr;
  a.out = v.out.data ? v.out.ptr<T>() + v.out_offset : nullptr;
  a.hs = p(v.hs); a.cs = p(v.cs); a.gates = p(v.gates); a.hraw = p(v.hraw);
  a.dout = v.dout.data ? v.dout.ptr<T>() + v.out_offset : nullptr;
  a.dhn = p(v.dhn); a.dcn = p(v.dcn);
  a.dgx = v.dgx.data ? v.dgx.ptr<T>() + v.gx_offset : nullptr;
  a.dgh = p(v.dgh); a.dhp = p(v.dhp); a.dh0 = p(v.dh0); a.dc0 = p(v.dc0);
  return a;
}

template <class Impl, class = void>
struct has_rnn_cells : std::false_type {};
template <class Impl>
struct has_rnn_cells<Impl, std::void_t<decltype(&Impl::template lstm_cell<float>)>> : std::true_type {};

// The sizes (M, K, N) of a product's operands, checked: a [M, K] on the module's device and b [K, N], or
// b [N, K] where it is a weight stored as torch stores one (`b_is_weight`).
template <class Impl>
std::array<int64_t, 3> product_sizes(const TensorView& a, const char* a_name, const TensorView& b, const char* b_name,
                                     bool b_is_weight) {
  expect_device(a, Impl::device, a_name);
  expect_rank(a, 2, a_name);
  expect_rank(b, 2, b_name);
  expect_same(b, a, b_name);
  const int64_t M = a.shape[0], K = a.shape[1], N = b.shape[b_is_weight ? 0 : 1];
  if (b.shape[b_is_weight ? 1 : 0] != K)
    fail_value(std::string(b_name) + ": expected " + std::to_string(K) + (b_is_weight ? " columns" : " rows") +
               ", got " + shape_str(b));
  return {M, K, N};
}

// An input projection's operands: input [M, K], w_ih [N, K].
template <class Impl>
std::array<int64_t, 3> projection_sizes(const TensorView& x, const TensorView& w) {
  return product_sizes<Impl>(x, "input", w, "w_ih", true);
}

template <class Impl>
void bind_rnn(py::module_& m) {
  using py::arg;

  m.def(
      "rnn_forward",
      [](bool lstm, py::handle gx, int64_t gx_offset, py::handle w_hh, py::handle b_hh, py::handle w_hr,
         py::handle lengths, py::handle out, int64_t out_offset, py::handle hs, py::handle cs, py::handle gates,
         py::handle hraw, bool reverse, intptr_t stream) {
        RnnViews v;
        v.lstm = lstm;
        v.gx = view_of(gx, "gx"); v.w_hh = view_of(w_hh, "w_hh");
        v.b_hh = optional_view(b_hh, "b_hh"); v.w_hr = optional_view(w_hr, "w_hr");
        v.lengths = optional_view(lengths, "lengths", Holds::indices);
        v.out = view_of(out, "out"); v.hs = view_of(hs, "hs"); v.cs = optional_view(cs, "cs");
        v.gates = optional_view(gates, "gates"); v.hraw = optional_view(hraw, "hraw");
        v.gx_offset = gx_offset; v.out_offset = out_offset;
        if (lstm && v.b_hh.data) fail_value("b_hh: the LSTM folds it into gx");
        if (!lstm && v.w_hr.data) fail_value("w_hr: the GRU has no projection");
        check_rnn(v, v.gx, "gx", Impl::device);
        v.s.reverse = reverse;
        for (const TensorView* t : {&v.out, &v.hs, &v.cs, &v.gates, &v.hraw})
          if (t->data) prefer_huge_pages(*t);
        py::gil_scoped_release nogil;
        dispatch_float(v.gx.dtype, [&](auto t) {
          using T = decltype(t);
          const RnnArgs<T> a = rnn_args<T>(v);
          if (lstm) Impl::template lstm_forward<T>(a, stream);
          else Impl::template gru_forward<T>(a, stream);
        });
      },
      arg("lstm"), arg("gx"), arg("gx_offset"), arg("w_hh"), arg("b_hh"), arg("w_hr"), arg("lengths"), arg("out"),
      arg("out_offset"), arg("hs"), arg("cs"), arg("gates"), arg("hraw"), arg("reverse"), arg("stream") = 0,
      "One layer and direction of an LSTM (lstm=True) or GRU over a time-major sequence (see rnn_params.h).");

  m.def(
      "rnn_backward",
      [](bool lstm, py::handle dout, int64_t out_offset, py::handle dhn, py::handle dcn, py::handle w_hh,
         py::handle w_hr, py::handle lengths, py::handle hs, py::handle cs, py::handle gates, py::handle hraw,
         py::handle dgx, int64_t gx_offset, py::handle dgh, py::handle dhp, py::handle dh0, py::handle dc0,
         bool reverse, intptr_t stream) {
        RnnViews v;
        v.lstm = lstm;
        v.dout = view_of(dout, "grad_out"); v.dhn = view_of(dhn, "grad_hn"); v.dcn = optional_view(dcn, "grad_cn");
        v.w_hh = view_of(w_hh, "w_hh"); v.w_hr = optional_view(w_hr, "w_hr");
        v.lengths = optional_view(lengths, "lengths", Holds::indices);
        v.hs = view_of(hs, "hs"); v.cs = optional_view(cs, "cs");
        v.gates = optional_view(gates, "gates"); v.hraw = optional_view(hraw, "hraw");
        v.dgx = view_of(dgx, "grad_gx"); v.dgh = optional_view(dgh, "grad_gh"); v.dhp = optional_view(dhp, "grad_hp");
        v.dh0 = view_of(dh0, "grad_h0"); v.dc0 = optional_view(dc0, "grad_c0");
        v.gx_offset = gx_offset; v.out_offset = out_offset;
        if (!lstm && v.w_hr.data) fail_value("w_hr: the GRU has no projection");
        check_rnn(v, v.dgx, "grad_gx", Impl::device);
        v.s.reverse = reverse;
        for (const TensorView* t : {&v.dgx, &v.dgh, &v.dhp})
          if (t->data) prefer_huge_pages(*t);
        py::gil_scoped_release nogil;
        dispatch_float(v.dgx.dtype, [&](auto t) {
          using T = decltype(t);
          const RnnArgs<T> a = rnn_args<T>(v);
          if (lstm) Impl::template lstm_backward<T>(a, stream);
          else Impl::template gru_backward<T>(a, stream);
        });
      },
      arg("lstm"), arg("grad_out"), arg("out_offset"), arg("grad_hn"), arg("grad_cn"), arg("w_hh"), arg("w_hr"),
      arg("lengths"), arg("hs"), arg("cs"), arg("gates"), arg("hraw"), arg("grad_gx"), arg("gx_offset"),
      arg("grad_gh"), arg("grad_hp"), arg("grad_h0"), arg("grad_c0"), arg("reverse"), arg("stream") = 0,
      "Backward through time of rnn_forward: gate gradients per step and the initial states' gradients.");

  // Input sizes up to this take the projections' one-pass form (the forward inside rnn_input_projection,
  // the backward chosen by the Python layer from this attribute).
  if constexpr (has_rnn_cells<Impl>::value) m.attr("rnn_narrow_input") = py::int_(Impl::narrow_input);

  if constexpr (has_rnn_cells<Impl>::value) m.def(
      "rnn_input_projection",
      [](py::handle x_, py::handle w_, py::handle b_, py::handle out_) {
        TensorView x = view_of(x_, "input"), w = view_of(w_, "w_ih"), b = optional_view(b_, "bias"),
                   out = view_of(out_, "out");
        const auto [M, K, N] = projection_sizes<Impl>(x, w);
        if (b.data) { expect_same(b, x, "bias"); expect_shape(b, {N}, "bias"); }
        expect_output(out, x, {M, N}, "out");
        prefer_huge_pages(out);
        py::gil_scoped_release nogil;
        dispatch_float(x.dtype, [&](auto t) {
          using T = decltype(t);
          Impl::template input_projection<T>(M, K, N, x.ptr<T>(), w.ptr<T>(), b.data ? b.ptr<T>() : nullptr,
                                             out.ptr<T>());
        });
      },
      arg("input"), arg("w_ih"), arg("bias"), arg("out"), "out = bias + input @ w_ih^T (all steps at once).");

  if constexpr (has_rnn_cells<Impl>::value) m.def(
      "rnn_input_projection_backward",
      [](py::handle x_, py::handle w_, py::handle dgx_, py::handle dx_, py::handle dw_, py::handle db_) {
        TensorView x = view_of(x_, "input"), w = view_of(w_, "w_ih"), dgx = view_of(dgx_, "grad_gx");
        TensorView dx = optional_view(dx_, "grad_input"), dw = optional_view(dw_, "grad_w_ih"),
                   db = optional_view(db_, "grad_bias");
        const auto [M, K, N] = projection_sizes<Impl>(x, w);
        expect_same(dgx, x, "grad_gx");
        expect_shape(dgx, {M, N}, "grad_gx");
        if (dx.data) expect_output(dx, x, {M, K}, "grad_input");
        if (dw.data) expect_output(dw, x, {N, K}, "grad_w_ih");
        if (db.data) expect_output(db, x, {N}, "grad_bias");
        py::gil_scoped_release nogil;
        dispatch_float(x.dtype, [&](auto t) {
          using T = decltype(t);
          Impl::template input_projection_backward<T>(M, K, N, x.ptr<T>(), w.ptr<T>(), dgx.ptr<T>(),
                                                      dx.data ? dx.ptr<T>() : nullptr, dw.data ? dw.ptr<T>() : nullptr,
                                                      db.data ? db.ptr<T>() : nullptr);
        });
      },
      arg("input"), arg("w_ih"), arg("grad_gx"), arg("grad_input"), arg("grad_w_ih"), arg("grad_bias"),
      "Gradients of rnn_input_projection in one pass over grad_gx: grad_input = grad_gx @ w_ih, grad_w_ih = "
      "grad_gx^T @ input, grad_bias = column sums of grad_gx; None skips one.");

  if constexpr (has_rnn_cells<Impl>::value) m.def(
      "matmul",
      [](py::handle a_, py::handle b_, py::handle out_) {
        const TensorView a = view_of(a_, "a", Holds::floats, true), b = view_of(b_, "b", Holds::floats, true),
                         out = view_of(out_, "out");
        const auto [M, K, N] = product_sizes<Impl>(a, "a", b, "b", false);
        expect_output(out, a, {M, N}, "out");
        if (overlaps(out, a) || overlaps(out, b)) fail_value("out: must not overlap a or b");
        prefer_huge_pages(out);
        py::gil_scoped_release nogil;
        dispatch_float(a.dtype, [&](auto t) {
          using T = decltype(t);
          Impl::template matmul<T>(M, N, K, a.ptr<T>(), a.stride[0], a.stride[1], b.ptr<T>(), b.stride[0],
                                   b.stride[1], out.ptr<T>(), N);
        });
      },
      arg("a"), arg("b"), arg("out"),
      "out = a @ b for 2-D a and b of any non-negative strides (a transposed view included); out contiguous.");

  if constexpr (has_rnn_cells<Impl>::value) m.def(
      "rnn_cell_forward",
      [](bool lstm, py::handle x_, py::handle h_, py::handle c_, py::handle w_ih_, py::handle w_hh_,
         py::handle b_ih_, py::handle b_hh_, py::handle h_out_, py::handle c_out_) {
        TensorView x = view_of(x_, "input"), h = view_of(h_, "hx"), w_ih = view_of(w_ih_, "w_ih"),
                   w_hh = view_of(w_hh_, "w_hh"), h_out = view_of(h_out_, "h_out");
        TensorView c = optional_view(c_, "cx"), b_ih = optional_view(b_ih_, "b_ih"),
                   b_hh = optional_view(b_hh_, "b_hh"), c_out = optional_view(c_out_, "c_out");
        expect_device(x, Impl::device, "input");
        expect_rank(x, 2, "input");
        expect_rank(w_hh, 2, "w_hh");
        const int64_t gates = lstm ? 4 : 3, B = x.shape[0], I = x.shape[1], H = w_hh.shape[1];
        if (H < 1 || B < 1) fail_value("input, w_hh: sizes must be positive");
        for (auto* t : {&h, &w_ih, &w_hh, &h_out}) expect_same(*t, x, "cell argument");
        expect_shape(w_hh, {gates * H, H}, "w_hh");
        expect_shape(w_ih, {gates * H, I}, "w_ih");
        expect_shape(h, {B, H}, "hx");
        expect_shape(h_out, {B, H}, "h_out");
        expect_writable(h_out, "h_out");
        for (auto [t, name] : {std::pair{&b_ih, "b_ih"}, std::pair{&b_hh, "b_hh"}})
          if (t->data) { expect_same(*t, x, name); expect_shape(*t, {gates * H}, name); }
        if (lstm) {
          if (!c.data || !c_out.data) fail_value("cx, c_out: required for the LSTM cell");
          expect_same(c, x, "cx"); expect_shape(c, {B, H}, "cx");
          expect_same(c_out, x, "c_out"); expect_shape(c_out, {B, H}, "c_out"); expect_writable(c_out, "c_out");
        }
        py::gil_scoped_release nogil;
        dispatch_float(x.dtype, [&](auto t) {
          using T = decltype(t);
          std::vector<T> scratch(static_cast<size_t>(B * 6 * H));
          auto p = [](const TensorView& v) { return v.data ? v.ptr<T>() : nullptr; };
          RnnCellArgs<T> a{B, I, H, p(x), p(h), p(c), p(w_ih), p(w_hh), p(b_ih), p(b_hh), p(h_out), p(c_out),
                                scratch.data()};
          if (lstm) Impl::template lstm_cell<T>(a);
          else Impl::template gru_cell<T>(a);
        });
      },
      arg("lstm"), arg("input"), arg("hx"), arg("cx"), arg("w_ih"), arg("w_hh"), arg("b_ih"), arg("b_hh"),
      arg("h_out"), arg("c_out"), "One inference step of an LSTM or GRU cell (the no-grad fast path).");
}

}  // namespace medkern
