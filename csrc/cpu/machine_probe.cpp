#include "machine_probe.h"

#include <omp.h>

#include <chrono>
#include <cstring>
#include <vector>

#include "simd.h"

namespace medkern::cpu {
namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

double measure_fma_peak_gflops(int threads, double seconds) {
  using V = Vec<float>::type;
  constexpr int kChains = 16;  // independent accumulators hide the FMA latency
  constexpr int64_t kIters = 1 << 16;
  double best = 0;
  volatile float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : best)
  {
    V acc[kChains];
    for (int i = 0; i < kChains; ++i) acc[i] = Vec<float>::broadcast(1.0f + i * 1e-3f);
    const V m = Vec<float>::broadcast(0.999999f), b = Vec<float>::broadcast(1e-7f);
    double local_best = 0;
    const double t_end = now() + seconds;
    while (now() < t_end) {
      const double t0 = now();
      for (int64_t it = 0; it < kIters; ++it)
        for (int i = 0; i < kChains; ++i) acc[i] = acc[i] * m + b;
      const double dt = now() - t0;
      const double flops = 2.0 * kChains * Vec<float>::lanes * kIters;
      if (flops / dt > local_best) local_best = flops / dt;
    }
    float s = 0;
    for (int i = 0; i < kChains; ++i) s += acc[i][0];
    sink = sink + s;
    best = local_best;
  }
  return best / 1e9;
}

double measure_copy_bandwidth_gbs(int threads, double seconds) {
  const size_t n = size_t(64) << 20;  // 256 MiB of floats, far beyond the caches
  std::vector<float> src(n, 1.0f), dst(n, 0.0f);
  double best = 0;
  const double t_end = now() + seconds;
  do {
    const double t0 = now();
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t c = 0; c < 64; ++c) {
      const size_t chunk = n / 64;
      std::memcpy(dst.data() + c * chunk, src.data() + c * chunk, chunk * sizeof(float));
    }
    const double dt = now() - t0;
    const double gbs = 2.0 * n * sizeof(float) / dt / 1e9;
    if (gbs > best) best = gbs;
  } while (now() < t_end);
  return best;
}

}  // namespace medkern::cpu
