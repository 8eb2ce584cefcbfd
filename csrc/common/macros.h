#pragma once
// Functions marked MEDKERN_HD compile for both the host (CPU kernels, CPU tests) and the device (CUDA
// kernels), so index arithmetic is written once and exercised by the CPU test suite.
#if defined(__CUDACC__)
#define MEDKERN_HD __host__ __device__ __forceinline__
#else
#define MEDKERN_HD inline
#endif
