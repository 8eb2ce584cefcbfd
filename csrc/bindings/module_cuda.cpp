// medkern._C_cuda: the CUDA kernels. Built only where nvcc was found; compiled by the host compiler.
//
// The kernels launch on the current device, and ConvArgs carries no device id, so the caller must make
// the tensors' device current: the Python layer (backends/native/_interop.py) calls every op with
// `torch.cuda.device(x.device)` active and passes torch's current stream of that device as `stream`.
#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>

#include "../cuda/conv2d.h"
#include "../cuda/gan_loss.cuh"
#include "../cuda/pool2d.h"
#include "../cuda/rnn.h"
#include "conv_binding.h"
#include "gan_loss_binding.h"
#include "pool2d_binding.h"
#include "rnn_binding.h"

namespace medkern {

struct CudaConv2d {
  static constexpr DeviceKind device = DeviceKind::cuda;
  static constexpr bool volumes = false;  // its implicit GEMM indexes planes only
  static constexpr bool prepacks = false;
  template <class T> static void forward(const ConvArgs<T>& a, intptr_t stream) { cuda::conv2d_forward(a, stream); }
  template <class T> static void grad_input(const ConvArgs<T>& a, intptr_t stream) {
    cuda::conv2d_grad_input(a, stream);
  }
  template <class T> static void grad_weight(const ConvArgs<T>& a, intptr_t stream) {
    cuda::conv2d_grad_weight(a, stream);
  }
  template <class T> static void grad_bias(const ConvArgs<T>& a, intptr_t stream) {
    cuda::conv2d_grad_bias(a, stream);
  }
};

struct CudaPool2d {
  static constexpr DeviceKind device = DeviceKind::cuda;
  template <class T> static void max_forward(const Pool2dArgs<T>& a, intptr_t stream) {
    cuda::max_pool2d_forward(a, stream);
  }
  template <class T> static int64_t max_backward(const Pool2dArgs<T>& a, intptr_t stream) {
    return cuda::max_pool2d_backward(a, stream);
  }
  template <class T> static void avg_forward(const Pool2dArgs<T>& a, intptr_t stream) {
    cuda::avg_pool2d_forward(a, stream);
  }
  template <class T> static void avg_backward(const Pool2dArgs<T>& a, intptr_t stream) {
    cuda::avg_pool2d_backward(a, stream);
  }
  template <class T> static void adaptive_avg_forward(const Pool2dArgs<T>& a, intptr_t stream) {
    cuda::adaptive_avg_pool2d_forward(a, stream);
  }
  template <class T> static void adaptive_avg_backward(const Pool2dArgs<T>& a, intptr_t stream) {
    cuda::adaptive_avg_pool2d_backward(a, stream);
  }
  template <class T> static void adaptive_max_forward(const Pool2dArgs<T>& a, intptr_t stream) {
    cuda::adaptive_max_pool2d_forward(a, stream);
  }
};

struct CudaRnn {
  static constexpr DeviceKind device = DeviceKind::cuda;
  template <class T> static void lstm_forward(const RnnArgs<T>& a, intptr_t stream) { cuda::lstm_forward(a, stream); }
  template <class T> static void lstm_backward(const RnnArgs<T>& a, intptr_t stream) { cuda::lstm_backward(a, stream); }
  template <class T> static void gru_forward(const RnnArgs<T>& a, intptr_t stream) { cuda::gru_forward(a, stream); }
  template <class T> static void gru_backward(const RnnArgs<T>& a, intptr_t stream) { cuda::gru_backward(a, stream); }
};

struct CudaGanLoss {
  static constexpr DeviceKind device = DeviceKind::cuda;
  template <class T> static void loss_forward(const GanLossArgs<T>& a, intptr_t stream) {
    cuda::gan_loss_forward(a, stream);
  }
  template <class T> static void penalty_forward(const GanPenaltyArgs<T>& a, intptr_t stream) {
    cuda::gan_penalty_forward(a, stream);
  }
};

}  // namespace medkern

PYBIND11_MODULE(_C_cuda, m) {
  namespace py = pybind11;
  m.doc() = "medkern CUDA kernels";
  medkern::bind_conv<medkern::CudaConv2d>(m);
  medkern::bind_pool2d<medkern::CudaPool2d>(m);
  medkern::bind_rnn<medkern::CudaRnn>(m);
  medkern::bind_gan_loss<medkern::CudaGanLoss>(m);
  m.def(
      "device_count",
      [] {
        int n = 0;
        // No driver, no device, or a driver too old for this runtime: all mean "no usable GPU" here,
        // which callers report as a reason rather than an exception.
        if (cudaGetDeviceCount(&n) != cudaSuccess) {
          (void)cudaGetLastError();
          return 0;
        }
        return n;
      },
      "Number of CUDA devices visible to this module (0 when there is no driver or device).");
  m.def("build_info", [] {
    py::dict d;
    d["cuda_archs"] = MEDKERN_CUDA_ARCHS;
    d["cuda_runtime_version"] = static_cast<int>(CUDART_VERSION);
    return d;
  });
}
