#pragma once
// The two floors every benchmark is compared with: the FMA peak and the copy bandwidth of this machine,
// measured rather than read from a data sheet (these machines are shared VMs).
namespace medkern::cpu {
double measure_fma_peak_gflops(int threads, double seconds);   // float32
double measure_copy_bandwidth_gbs(int threads, double seconds);  // bytes read + written per second
}  // namespace medkern::cpu
