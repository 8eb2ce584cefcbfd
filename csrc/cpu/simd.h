#pragma once
// Vector width for the build target. GCC/Clang vector extensions let one source compile to AVX-512,
// AVX2 or plain SSE/NEON depending on -march, which is the portable fallback MEDKERN_ARCH=portable needs.
#include <cstdint>
#include <cstring>

namespace medkern::cpu {

#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
constexpr const char* kIsaName = "avx512";
#elif defined(__AVX2__) || defined(__AVX__)
constexpr int kVecBytes = 32;
constexpr const char* kIsaName = "avx2";
#elif defined(__ARM_NEON)
constexpr int kVecBytes = 16;
constexpr const char* kIsaName = "neon";
#else
constexpr int kVecBytes = 16;
constexpr const char* kIsaName = "sse2";
#endif

// Integer type of the same width as T: the lane-index type of a shuffle mask.
template <typename T> struct SameWidthInt;
template <> struct SameWidthInt<float> { using type = int32_t; };
template <> struct SameWidthInt<double> { using type = int64_t; };

template <typename T>
struct Vec {
  typedef T type __attribute__((vector_size(kVecBytes)));
  typedef typename SameWidthInt<T>::type mask_type __attribute__((vector_size(kVecBytes)));
  static constexpr int lanes = kVecBytes / sizeof(T);
  // Masks that pick the even / odd elements of the 2*lanes values of two vectors (a then b).
  static mask_type even_lanes() {
    mask_type m;
    for (int l = 0; l < lanes; ++l) m[l] = 2 * l;
    return m;
  }
  static mask_type odd_lanes() {
    mask_type m;
    for (int l = 0; l < lanes; ++l) m[l] = 2 * l + 1;
    return m;
  }
  static type load(const T* p) { type v; std::memcpy(&v, p, sizeof(v)); return v; }
  static void store(T* p, type v) { std::memcpy(p, &v, sizeof(v)); }
  static type broadcast(T x) { return type{} + x; }
};

}  // namespace medkern::cpu
