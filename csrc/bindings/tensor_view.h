#pragma once
// Zero-copy views of Python arrays for the bindings. Anything that speaks DLPack is accepted (a torch
// tensor, a numpy array, a CuPy array, or a DLPack capsule). The checks here are the crash guard of the
// bindings: the ops layer validates first with friendlier messages, but no call reaching a binding may
// hand a kernel a pointer it cannot safely read or write.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "../common/dlpack.h"

namespace medkern {
namespace py = pybind11;

enum class DType { f32, f64, i64 };
enum class DeviceKind { cpu, cuda };

struct TensorView {
  void* data = nullptr;
  int ndim = 0;
  int64_t shape[8] = {0};
  int64_t stride[8] = {0};  // in elements; compact row-major unless the view was taken as strided
  DType dtype = DType::f32;
  DeviceKind device = DeviceKind::cpu;
  int device_id = 0;
  bool read_only = false;
  py::object owner;  // keeps the exported memory alive while the kernel runs

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  template <typename T> T* ptr() const { return static_cast<T*>(data); }
};

[[noreturn]] inline void fail_value(const std::string& msg) { throw py::value_error(msg); }
[[noreturn]] inline void fail_type(const std::string& msg) { throw py::type_error(msg); }

// What an argument may hold: data (float32 or float64) or indices (int64).
enum class Holds { floats, indices };

// Views are contiguous (row-major) unless `strided`: then any non-negative element strides are kept.
inline TensorView view_from_dl(const dlpack::Tensor& t, bool read_only, py::object owner, const char* name,
                               Holds holds, bool strided) {
  TensorView v;
  v.owner = std::move(owner);
  v.read_only = read_only;
  if (holds == Holds::floats) {
    if (t.dtype.lanes != 1 || t.dtype.code != dlpack::kFloat || (t.dtype.bits != 32 && t.dtype.bits != 64))
      fail_type(std::string(name) + ": expected a float32 or float64 array");
    v.dtype = t.dtype.bits == 32 ? DType::f32 : DType::f64;
  } else {
    if (t.dtype.lanes != 1 || t.dtype.code != dlpack::kInt || t.dtype.bits != 64)
      fail_type(std::string(name) + ": expected an int64 array");
    v.dtype = DType::i64;
  }
  switch (t.device.device_type) {
    case dlpack::kCPU: case dlpack::kCUDAHost: v.device = DeviceKind::cpu; break;
    case dlpack::kCUDA: case dlpack::kCUDAManaged: v.device = DeviceKind::cuda; break;
    default: fail_value(std::string(name) + ": unsupported device type " + std::to_string(t.device.device_type));
  }
  v.device_id = t.device.device_id;
  if (t.ndim < 0 || t.ndim > 8) fail_value(std::string(name) + ": rank " + std::to_string(t.ndim) + " is not supported");
  v.ndim = t.ndim;
  int64_t expect = 1;
  for (int i = t.ndim - 1; i >= 0; --i) {
    const int64_t n = t.shape[i];
    if (n < 0) fail_value(std::string(name) + ": negative size");
    v.shape[i] = n;
    v.stride[i] = t.strides != nullptr && strided ? t.strides[i] : expect;
    if (v.stride[i] < 0) fail_value(std::string(name) + ": negative strides are not supported");
    // Strides of size-1 dimensions carry no information; every other dimension must be compact.
    if (!strided && t.strides != nullptr && n != 1 && t.strides[i] != expect)
      fail_value(std::string(name) + ": must be contiguous (row-major); call .contiguous() first");
    expect *= n;
  }
  v.data = static_cast<char*>(t.data) + t.byte_offset;
  if (v.data == nullptr && v.numel() != 0) fail_value(std::string(name) + ": null data pointer");
  return v;
}

// Reads a DLPack capsule (legacy or versioned) without consuming it: the capsule's own destructor
// releases the producer's memory once `owner` goes away.
inline TensorView view_of(py::handle obj, const char* name, Holds holds = Holds::floats, bool strided = false) {
  py::object capsule;
  if (PyCapsule_CheckExact(obj.ptr())) {
    capsule = py::reinterpret_borrow<py::object>(obj);
  } else if (py::hasattr(obj, "__dlpack__")) {
    capsule = obj.attr("__dlpack__")();
  } else {
    fail_type(std::string(name) + ": expected an array supporting DLPack (torch, numpy, CuPy), got " +
              std::string(py::str(py::type::of(obj).attr("__name__"))));
  }
  PyObject* cap = capsule.ptr();
  if (PyCapsule_IsValid(cap, "dltensor")) {
    auto* m = static_cast<dlpack::ManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
    return view_from_dl(m->dl_tensor, false, capsule, name, holds, strided);
  }
  if (PyCapsule_IsValid(cap, "dltensor_versioned")) {
    auto* m = static_cast<dlpack::ManagedTensorVersioned*>(PyCapsule_GetPointer(cap, "dltensor_versioned"));
    if (m->version.major != 1) fail_value(std::string(name) + ": unsupported DLPack major version");
    return view_from_dl(m->dl_tensor, (m->flags & dlpack::kFlagReadOnly) != 0, capsule, name, holds, strided);
  }
  fail_type(std::string(name) + ": not a live DLPack capsule (already consumed?)");
}

inline std::string shape_str(const TensorView& v) {
  std::string s = "(";
  for (int i = 0; i < v.ndim; ++i) s += (i ? ", " : "") + std::to_string(v.shape[i]);
  return s + (v.ndim == 1 ? ",)" : ")");
}

inline void expect_shape(const TensorView& v, std::initializer_list<int64_t> shape, const char* name) {
  bool ok = v.ndim == static_cast<int>(shape.size());
  int i = 0;
  for (int64_t n : shape) ok = ok && v.shape[i++] == n;
  if (!ok) {
    std::string want = "(";
    i = 0;
    for (int64_t n : shape) want += (i++ ? ", " : "") + std::to_string(n);
    fail_value(std::string(name) + ": expected shape " + want + (shape.size() == 1 ? ",)" : ")") +
               ", got " + shape_str(v));
  }
}

inline void expect_rank(const TensorView& v, int rank, const char* name) {
  if (v.ndim != rank)
    fail_value(std::string(name) + ": expected rank " + std::to_string(rank) + ", got " + shape_str(v));
}

inline void expect_writable(const TensorView& v, const char* name) {
  if (v.read_only) fail_value(std::string(name) + ": output array is read-only");
}

inline void expect_same_device(const TensorView& a, const TensorView& b, const char* name) {
  if (a.device != b.device || a.device_id != b.device_id)
    fail_value(std::string(name) + ": on a different device from the input");
}

inline void expect_same(const TensorView& a, const TensorView& b, const char* name) {
  if (a.dtype != b.dtype) fail_type(std::string(name) + ": dtype differs from the input's");
  expect_same_device(a, b, name);
}

// A writable output like `ref` (dtype, device) of the given shape.
inline void expect_output(const TensorView& v, const TensorView& ref, std::initializer_list<int64_t> shape,
                          const char* name) {
  expect_same(v, ref, name);
  expect_writable(v, name);
  expect_shape(v, shape, name);
}

// A tensor like `ref`: its dtype, device and shape.
inline void expect_like(const TensorView& v, const TensorView& ref, const char* name, const char* ref_name) {
  expect_same(v, ref, name);
  bool ok = v.ndim == ref.ndim;
  for (int i = 0; ok && i < v.ndim; ++i) ok = v.shape[i] == ref.shape[i];
  if (!ok) fail_value(std::string(name) + ": shape " + shape_str(v) + " differs from " + ref_name + "'s " + shape_str(ref));
}

// Whether the memory spans of two views (first to last element they address) intersect.
inline bool overlaps(const TensorView& x, const TensorView& y) {
  auto span = [](const TensorView& v) {
    const size_t item = v.dtype == DType::f32 ? 4 : 8;
    const auto* first = static_cast<const char*>(v.data);
    size_t last = 0;
    for (int i = 0; i < v.ndim; ++i) {
      if (v.shape[i] == 0) return std::pair{first, first};
      last += static_cast<size_t>((v.shape[i] - 1) * v.stride[i]);
    }
    return std::pair{first, first + (last + 1) * item};
  };
  const auto [x0, x1] = span(x);
  const auto [y0, y1] = span(y);
  return x0 < y1 && y0 < x1;
}

inline void expect_device(const TensorView& v, DeviceKind want, const char* name) {
  if (v.device != want)
    fail_value(std::string(name) + (want == DeviceKind::cpu ? ": expected a CPU array" : ": expected a CUDA array"));
}

// A large CPU output is usually fresh memory from the allocator, and faulting it in 4 KiB pages can cost
// more than the kernel itself (measured here: 6.7 ms to zero a fresh 32 MiB tensor, 3.7 ms with 2 MiB
// pages once the machine has warmed up; the first touches of never-used memory in a VM are slower either
// way). So outputs of 4 MiB and more ask for transparent huge pages before the kernel's first touch, as
// torch's THP_MEM_ALLOC_ENABLE does; this changes only how the pages are backed. MEDKERN_HUGE_PAGES=0
// turns it off.
inline bool huge_pages_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("MEDKERN_HUGE_PAGES");
    return !(v && std::string(v) == "0");
  }();
  return enabled;
}

inline void prefer_huge_pages(const TensorView& v) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(1) << 21;
  if (v.device != DeviceKind::cpu || !huge_pages_enabled()) return;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(v.data);
  const uintptr_t bytes = static_cast<uintptr_t>(v.numel()) * (v.dtype == DType::f32 ? 4 : 8);
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1), last = (begin + bytes) & ~(kHuge - 1);
  if (bytes >= 2 * kHuge && last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)v;
#endif
}

// Calls fn(float{}) or fn(double{}) for the view's dtype, so one lambda serves both precisions.
template <class Fn>
void dispatch_float(DType dt, Fn&& fn) {
  if (dt == DType::f32) fn(float{});
  else fn(double{});
}

// The element type T of a kernel's arguments struct (Pool2dArgs<T>, ConvArgs<T>: `x` is a const T*), for the
// bindings' generic kernel lambdas.
template <class Args>
using elem_t = std::remove_const_t<std::remove_pointer_t<decltype(std::declval<std::decay_t<Args>&>().x)>>;

}  // namespace medkern
