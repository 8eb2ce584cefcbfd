// medkern._C: the CPU kernels. Always built.
#include <omp.h>
#include <pybind11/pybind11.h>

#include "../cpu/conv2d.h"
#include "../cpu/gan_loss.h"
#include "../cpu/machine_probe.h"
#include "../cpu/matmul.h"
#include "../cpu/pool2d.h"
#include "../cpu/rnn.h"
#include "../cpu/simd.h"
#include "batch_norm_binding.h"
#include "conv_binding.h"
#include "conv_plan_binding.h"
#include "gan_loss_binding.h"
#include "host_cache.h"
#include "pool2d_binding.h"
#include "pool3d_binding.h"
#include "rnn_binding.h"

namespace medkern {

struct CpuConv2d {
  static constexpr DeviceKind device = DeviceKind::cpu;
  template <class T> static void forward(const ConvArgs<T>& a, intptr_t) { cpu::conv2d_forward(a); }
  template <class T> static void grad_input(const ConvArgs<T>& a, intptr_t) { cpu::conv2d_grad_input(a); }
  template <class T> static void grad_weight(const ConvArgs<T>& a, intptr_t) { cpu::conv2d_grad_weight(a); }
  template <class T> static void grad_bias(const ConvArgs<T>& a, intptr_t) { cpu::conv2d_grad_bias(a); }
  static constexpr bool volumes = true;
  static constexpr bool prepacks = true;
  static int layout_code(const std::string& name) { return static_cast<int>(cpu::forward_path_named(name)); }
  template <class T> static int64_t packed_weight_size(int layout, const ConvShape& s) {
    return cpu::conv2d_packed_weight_size<T>(static_cast<cpu::ConvPath>(layout), s);
  }
  template <class T> static void pack_weight(int layout, const ConvShape& s, const T* w, T* out) {
    cpu::conv2d_pack_weight(static_cast<cpu::ConvPath>(layout), s, w, out);
  }
};

struct CpuPool2d {
  static constexpr DeviceKind device = DeviceKind::cpu;
  template <class T> static void max_forward(const Pool2dArgs<T>& a, intptr_t) { cpu::max_pool2d_forward(a); }
  template <class T> static int64_t max_backward(const Pool2dArgs<T>& a, intptr_t) { return cpu::max_pool2d_backward(a); }
  template <class T> static void max_backward_from_input(const Pool2dArgs<T>& a, intptr_t) {
    cpu::max_pool2d_backward_from_input(a);
  }
  template <class T> static void avg_forward(const Pool2dArgs<T>& a, intptr_t) { cpu::avg_pool2d_forward(a); }
  template <class T> static void avg_backward(const Pool2dArgs<T>& a, intptr_t) { cpu::avg_pool2d_backward(a); }
  template <class T> static void adaptive_avg_forward(const Pool2dArgs<T>& a, intptr_t) { cpu::adaptive_avg_pool2d_forward(a); }
  template <class T> static void adaptive_avg_backward(const Pool2dArgs<T>& a, intptr_t) { cpu::adaptive_avg_pool2d_backward(a); }
  template <class T> static void adaptive_max_forward(const Pool2dArgs<T>& a, intptr_t) { cpu::adaptive_max_pool2d_forward(a); }
};

struct CpuRnn {
  static constexpr DeviceKind device = DeviceKind::cpu;
  static constexpr int64_t narrow_input = cpu::kNarrowInput;
  template <class T> static void lstm_forward(const RnnArgs<T>& a, intptr_t) { cpu::lstm_forward(a); }
  template <class T> static void lstm_backward(const RnnArgs<T>& a, intptr_t) { cpu::lstm_backward(a); }
  template <class T> static void gru_forward(const RnnArgs<T>& a, intptr_t) { cpu::gru_forward(a); }
  template <class T> static void gru_backward(const RnnArgs<T>& a, intptr_t) { cpu::gru_backward(a); }
  template <class T> static void lstm_cell(const RnnCellArgs<T>& a) { cpu::lstm_cell_forward(a); }
  template <class T> static void gru_cell(const RnnCellArgs<T>& a) { cpu::gru_cell_forward(a); }
  template <class T> static void input_projection(int64_t M, int64_t K, int64_t N, const T* x, const T* w, const T* b,
                                                 T* out) {
    cpu::rnn_input_projection(M, K, N, x, w, b, out);
  }
  template <class T> static void input_projection_backward(int64_t M, int64_t K, int64_t N, const T* x, const T* w,
                                                          const T* dgx, T* dx, T* dw, T* db) {
    cpu::rnn_input_projection_backward(M, K, N, x, w, dgx, dx, dw, db);
  }
  template <class T> static void matmul(int64_t M, int64_t N, int64_t K, const T* a, int64_t a_rs, int64_t a_cs,
                                        const T* b, int64_t b_rs, int64_t b_cs, T* c, int64_t ldc) {
    cpu::matmul(M, N, K, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc);
  }
};

struct CpuGanLoss {
  static constexpr DeviceKind device = DeviceKind::cpu;
  template <class T> static void loss_forward(const GanLossArgs<T>& a, intptr_t) { cpu::gan_loss_forward(a); }
  template <class T> static void penalty_forward(const GanPenaltyArgs<T>& a, intptr_t) { cpu::gan_penalty_forward(a); }
};

}  // namespace medkern

PYBIND11_MODULE(_C, m) {
  namespace py = pybind11;
  m.doc() = "medkern CPU kernels";
  medkern::bind_conv<medkern::CpuConv2d>(m);
  medkern::bind_conv_plan(m);
  medkern::bind_pool2d<medkern::CpuPool2d>(m);
  medkern::bind_pool3d(m);
  medkern::bind_batch_norm(m);
  medkern::bind_rnn<medkern::CpuRnn>(m);
  medkern::bind_gan_loss<medkern::CpuGanLoss>(m);
  medkern::bind_host_cache(m);
  m.def("build_info", [] {
    py::dict d;
    d["isa"] = medkern::cpu::kIsaName;
    d["vector_bytes"] = medkern::cpu::kVecBytes;
    d["arch"] = MEDKERN_ARCH_NAME;
    d["openmp"] = _OPENMP;
    d["compiler"] = __VERSION__;
    return d;
  });
  m.def("num_threads", [] { return omp_get_max_threads(); }, "OpenMP threads the kernels use.");
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("num_threads: must be positive");
    omp_set_num_threads(n);
  }, py::arg("num_threads"));
  m.def("measure_fma_peak_gflops", [](int threads, double seconds) {
    if (threads < 1) throw py::value_error("threads: must be positive");
    py::gil_scoped_release nogil;
    return medkern::cpu::measure_fma_peak_gflops(threads, seconds);
  }, py::arg("threads"), py::arg("seconds") = 0.3);
  m.def("measure_copy_bandwidth_gbs", [](int threads, double seconds) {
    if (threads < 1) throw py::value_error("threads: must be positive");
    py::gil_scoped_release nogil;
    return medkern::cpu::measure_copy_bandwidth_gbs(threads, seconds);
  }, py::arg("threads"), py::arg("seconds") = 0.3);
}
