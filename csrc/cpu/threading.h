#pragma once
#include <omp.h>

#include <cstdint>

namespace medkern::cpu {

// Waking the OpenMP team costs microseconds: below this many multiply-adds (a few tens of microseconds of one
// core's work) a convolution runs on the caller's thread, the latency path.
constexpr int64_t kThreadingMinMultiplyAdds = int64_t(1) << 18;

inline int threads_for(int64_t multiply_adds) {
  return multiply_adds >= kThreadingMinMultiplyAdds ? omp_get_max_threads() : 1;
}

}  // namespace medkern::cpu
