#pragma once
// Per-thread scratch, kept between calls (OpenMP reuses its threads): a kernel whose buffers are megabytes would
// otherwise spend a visible part of a small call faulting in fresh pages. A slot grows to the largest size asked
// of it and is zeroed when it grows; callers that read past what they wrote (GEMM panel columns past a block's
// tiles) get values an earlier call left there, which only reach discarded outputs.
#include <algorithm>
#include <cstdint>

#include "gemm.h"  // Buffer, alloc_buffer

namespace medkern::cpu {

constexpr int kThreadScratchSlots = 4;

template <typename T>
T* thread_scratch(int slot, int64_t size) {
  static thread_local Buffer<T> buffers[kThreadScratchSlots];
  static thread_local int64_t sizes[kThreadScratchSlots] = {};
  if (sizes[slot] < size) {
    buffers[slot] = alloc_buffer<T>(size);
    std::fill(buffers[slot].get(), buffers[slot].get() + size, T(0));
    sizes[slot] = size;
  }
  return buffers[slot].get();
}

}  // namespace medkern::cpu
