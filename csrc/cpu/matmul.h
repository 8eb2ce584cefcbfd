#pragma once
// A plain matrix product over strided operands on gemm.h's micro-kernel, threaded:
//
//   C[M x N] = A[M x K] * B[K x N],   A(i, k) = a[i * a_rs + k * a_cs],  B(k, j) = b[k * b_rs + j * b_cs]
//
// The recurrent layers' weight gradients and wide input gradients are such products over every step at
// once (K or M = steps x batch, thousands), with one operand a transposed view of the gate gradients.
// torch's matrix product (MKL) ran them at 150-180 GFLOP/s on this machine, a third of its FMA peak.
#include <cstdint>

namespace medkern::cpu {

template <typename T>
void matmul(int64_t M, int64_t N, int64_t K, const T* a, int64_t a_rs, int64_t a_cs, const T* b, int64_t b_rs,
            int64_t b_cs, T* c, int64_t ldc);

}  // namespace medkern::cpu
