#pragma once
// A cache of large CPU output buffers, handed to torch through DLPack.
//
// A large tensor from torch's CPU allocator is fresh memory from the kernel every time (glibc maps
// anything over its 32 MiB threshold, and trims the heap above it), and on these machines faulting it
// in costs more than most kernels that write it: measured 10.6 ms to zero a fresh 32 MiB tensor against
// 0.5 ms for one already mapped, while the max-pool backward that writes it needs 2 ms. Training asks
// for the same sizes every step, so a freed output goes back to this cache and the next output of a
// similar size reuses its already-mapped pages: what torch's CUDA caching allocator does for GPU memory.
//
// Blocks are reused for requests between 3/4 of and their full size; the cache holds at most
// MEDKERN_CPU_CACHE_MB mebibytes of free blocks (default 1024, or an eighth of the machine's memory if that
// is less; 0 turns caching off). The tensors it hands out are ordinary torch tensors except that their
// storage cannot be resized in place.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "../common/dlpack.h"

namespace medkern {

class HostCache {
 public:
  static constexpr size_t kAlign = 64;

  // Leaked on purpose: tensors may be freed during interpreter teardown, after static destructors.
  static HostCache& get() {
    static HostCache* cache = new HostCache();
    return *cache;
  }

  void* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.lower_bound(bytes);
      if (it != free_.end() && it->first - bytes <= it->first / 4) {
        void* p = it->second;
        block_size_[p] = it->first;
        cached_ -= it->first;
        free_.erase(it);
        ++hits_;
        return p;
      }
      ++misses_;
    }
    const size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
    void* p = std::aligned_alloc(kAlign, rounded);
    if (p == nullptr) throw std::bad_alloc();
    std::lock_guard<std::mutex> lock(mu_);
    block_size_[p] = rounded;
    return p;
  }

  void give_back(void* p) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = block_size_.find(p);
    const size_t bytes = it->second;
    block_size_.erase(it);
    if (cached_ + bytes > limit_) {
      std::free(p);
      return;
    }
    cached_ += bytes;
    free_.emplace(bytes, p);
  }

  void release() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& kv : free_) std::free(kv.second);
    free_.clear();
    cached_ = 0;
  }

  pybind11::dict info() {
    std::lock_guard<std::mutex> lock(mu_);
    size_t in_use = 0;
    for (auto& kv : block_size_) in_use += kv.second;
    pybind11::dict d;
    d["cached_bytes"] = cached_;
    d["cached_blocks"] = free_.size();
    d["in_use_bytes"] = in_use;
    d["limit_bytes"] = limit_;
    d["hits"] = hits_;
    d["misses"] = misses_;
    return d;
  }

  bool enabled() const { return limit_ > 0; }

 private:
  HostCache() {
    const char* v = std::getenv("MEDKERN_CPU_CACHE_MB");
    if (v) {
      limit_ = size_t(std::strtoull(v, nullptr, 10)) << 20;
    } else {  // 1 GiB, or an eighth of the memory on a smaller machine
      const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
      const size_t ram = pages > 0 && page > 0 ? size_t(pages) * size_t(page) : size_t(8) << 30;
      limit_ = std::min(size_t(1) << 30, ram / 8);
    }
    // A fork while another thread holds the lock would leave the child's copy locked forever.
    pthread_atfork([] { get().mu_.lock(); }, [] { get().mu_.unlock(); }, [] { get().mu_.unlock(); });
  }

  std::mutex mu_;
  std::multimap<size_t, void*> free_;        // size -> free block
  std::map<void*, size_t> block_size_;       // blocks handed out
  size_t cached_ = 0, limit_ = 0, hits_ = 0, misses_ = 0;
};

// The DLPack tensor for one cached block: owns its shape array and returns the block when torch frees it.
struct HostCacheTensor {
  dlpack::ManagedTensor managed;
  std::vector<int64_t> shape;
};

inline pybind11::capsule host_cache_empty(const std::vector<int64_t>& shape, const std::string& dtype) {
  dlpack::DataType dt;
  if (dtype == "float32") dt = {dlpack::kFloat, 32, 1};
  else if (dtype == "float64") dt = {dlpack::kFloat, 64, 1};
  else if (dtype == "int64") dt = {dlpack::kInt, 64, 1};
  else throw pybind11::value_error("dtype: expected float32, float64 or int64, got " + dtype);
  size_t count = 1;
  for (int64_t n : shape) {
    if (n < 0) throw pybind11::value_error("shape: negative size");
    count *= static_cast<size_t>(n);
  }
  if (shape.size() > 8) throw pybind11::value_error("shape: rank above 8 is not supported");
  auto* t = new HostCacheTensor{};
  t->shape = shape;
  t->managed.dl_tensor.data = HostCache::get().take(std::max<size_t>(count * dt.bits / 8, 1));
  t->managed.dl_tensor.device = {dlpack::kCPU, 0};
  t->managed.dl_tensor.ndim = static_cast<int32_t>(shape.size());
  t->managed.dl_tensor.dtype = dt;
  t->managed.dl_tensor.shape = t->shape.data();
  t->managed.dl_tensor.strides = nullptr;
  t->managed.dl_tensor.byte_offset = 0;
  t->managed.manager_ctx = t;
  t->managed.deleter = [](dlpack::ManagedTensor* m) {
    auto* owner = static_cast<HostCacheTensor*>(m->manager_ctx);
    HostCache::get().give_back(owner->managed.dl_tensor.data);
    delete owner;
  };
  // An unconsumed capsule frees its tensor; a consumer renames the capsule and owns it instead.
  return pybind11::capsule(&t->managed, "dltensor", [](PyObject* cap) {
    if (PyCapsule_IsValid(cap, "dltensor")) {
      auto* m = static_cast<dlpack::ManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
      m->deleter(m);
    }
  });
}

inline void bind_host_cache(pybind11::module_& m) {
  namespace py = pybind11;
  m.def("host_cache_empty", &host_cache_empty, py::arg("shape"), py::arg("dtype"),
        "An uninitialised compact CPU array (DLPack capsule) from the cache of large output buffers.");
  m.def("host_cache_enabled", [] { return HostCache::get().enabled(); });
  m.def("host_cache_info", [] { return HostCache::get().info(); });
  m.def("host_cache_release", [] { HostCache::get().release(); }, "Frees every cached free block.");
}

}  // namespace medkern
