#pragma once
// Vector width for the build target. GCC/Clang vector extensions let one source compile to AVX-512,
// AVX2 or plain SSE/NEON depending on -march, which is the portable fallback MEDKERN_ARCH=portable needs.
#include <cstdint>
#include <cstring>
#include <type_traits>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

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
  // Their inverse: the first / second half of the interleaving a0 b0 a1 b1 ... of two vectors.
  static mask_type interleave_low() {
    mask_type m;
    for (int l = 0; l < lanes / 2; ++l) m[2 * l] = l, m[2 * l + 1] = lanes + l;
    return m;
  }
  static mask_type interleave_high() {
    mask_type m;
    for (int l = 0; l < lanes / 2; ++l) m[2 * l] = lanes / 2 + l, m[2 * l + 1] = lanes + lanes / 2 + l;
    return m;
  }
  static type load(const T* p) { type v; std::memcpy(&v, p, sizeof(v)); return v; }
  static void store(T* p, type v) { std::memcpy(p, &v, sizeof(v)); }
  // Transposes the lanes x lanes block held by v[0 .. lanes-1] (row r in v[r]): log2(lanes) rounds of
  // pairing rows i and i + lanes/2 by interleaving (a perfect shuffle); 4 rounds of 16 shuffles for
  // 16 floats. For packing a matrix transposed with whole-vector stores.
  static void transpose(type* v) {
    type t[lanes];
    for (int round = 1; round < lanes; round *= 2) {
      for (int i = 0; i < lanes / 2; ++i) {
        t[2 * i] = __builtin_shuffle(v[i], v[i + lanes / 2], interleave_low());
        t[2 * i + 1] = __builtin_shuffle(v[i], v[i + lanes / 2], interleave_high());
      }
      for (int i = 0; i < lanes; ++i) v[i] = t[i];
    }
  }
#if defined(__AVX512F__)
  // The mask of AVX-512's masked loads and stores: lanes 0 .. n-1.
  static __mmask16 first_mask(int n) { return static_cast<__mmask16>((1u << n) - 1); }
#endif
#if defined(__AVX2__)
  // The vector mask of AVX2's masked loads and stores: all ones in lanes 0 .. n-1.
  static __m256i first_lanes(int n) {
    typedef typename SameWidthInt<T>::type I;
    typedef I ivec __attribute__((vector_size(32)));
    ivec lane;
    for (int l = 0; l < int(32 / sizeof(T)); ++l) lane[l] = l;
    return (__m256i)(lane < I(n));
  }
#endif
  // Loads p[0 .. n-1] (0 <= n <= lanes) into lanes 0 .. n-1 and zeros the rest, reading no memory past
  // p + n: the zero-padded tail of a row. One masked load on AVX-512 and AVX2.
  static type load_first(const T* p, int n) {
#if defined(__AVX512F__)
    if constexpr (sizeof(type) == 64) {
      if constexpr (std::is_same<T, float>::value) return (type)_mm512_maskz_loadu_ps(first_mask(n), p);
      else return (type)_mm512_maskz_loadu_pd(static_cast<__mmask8>(first_mask(n)), p);
    }
#endif
#if defined(__AVX2__)
    if constexpr (sizeof(type) == 32) {
      if constexpr (std::is_same<T, float>::value) return (type)_mm256_maskload_ps(p, first_lanes(n));
      else return (type)_mm256_maskload_pd(p, first_lanes(n));
    }
#endif
    type v{};
    std::memcpy(&v, p, sizeof(T) * n);
    return v;
  }
  // The vector whose lane l is row[first + l] for lo <= l < hi and zero elsewhere (0 <= lo <= hi <= lanes),
  // reading only row[first + lo .. first + hi): a window that hangs over either end of a row.
  static type load_range(const T* row, int64_t first, int lo, int hi) {
    if (lo >= hi) return type{};
    const type v = load_first(row + first + lo, hi - lo);
    if (lo == 0) return v;
    // lane l of the result: lane l - lo of v, or (below lo) of the zero vector
    mask_type m;
    for (int l = 0; l < lanes; ++l) m[l] = l;
    m -= lo;
    return __builtin_shuffle(type{}, v, m >= 0 ? m + lanes : mask_type{});
  }
  // Stores lanes 0 .. n-1 of v (0 <= n <= lanes) and touches no memory past p + n: the tail of a row that
  // does not fill a vector, without a scalar loop. One masked store on AVX-512 and AVX2.
  static void store_first(T* p, type v, int n) {
#if defined(__AVX512F__)
    if constexpr (sizeof(type) == 64) {
      if constexpr (std::is_same<T, float>::value) _mm512_mask_storeu_ps(p, first_mask(n), (__m512)v);
      else _mm512_mask_storeu_pd(p, static_cast<__mmask8>(first_mask(n)), (__m512d)v);
      return;
    }
#endif
#if defined(__AVX2__)
    if constexpr (sizeof(type) == 32) {
      if constexpr (std::is_same<T, float>::value) _mm256_maskstore_ps(p, first_lanes(n), (__m256)v);
      else _mm256_maskstore_pd(p, first_lanes(n), (__m256d)v);
      return;
    }
#endif
    std::memcpy(p, &v, sizeof(T) * n);
  }
  // A store that bypasses the caches when p is vector-aligned: for outputs far larger than the caches, it
  // saves reading each line from memory before overwriting it (write-allocate). Callers fence afterwards.
  static void store_streaming(T* p, type v) {
#if defined(__x86_64__)
    if (reinterpret_cast<uintptr_t>(p) % sizeof(type) == 0) {
      constexpr bool f32 = std::is_same<T, float>::value;
#if defined(__AVX512F__)
      if constexpr (sizeof(type) == 64) {
        if constexpr (f32) _mm512_stream_ps(p, (__m512)v); else _mm512_stream_pd(p, (__m512d)v);
        return;
      }
#endif
#if defined(__AVX__)
      if constexpr (sizeof(type) == 32) {
        if constexpr (f32) _mm256_stream_ps(p, (__m256)v); else _mm256_stream_pd(p, (__m256d)v);
        return;
      }
#endif
      if constexpr (sizeof(type) == 16) {
        if constexpr (f32) _mm_stream_ps(p, (__m128)v); else _mm_stream_pd(p, (__m128d)v);
        return;
      }
    }
#endif
    store(p, v);
  }
  // One broadcast instruction (from memory when x comes from memory), through the intrinsics on x86:
  // `type{} + x` cost an extra scalar add (0 + x is not x for x = -0) and a lane-by-lane fill compiled to
  // a 256-bit broadcast plus an insert, both inside the GEMM micro-kernel's inner loop.
  static type broadcast(T x) {
#if defined(__x86_64__)
    constexpr bool f32 = std::is_same<T, float>::value;
#if defined(__AVX512F__)
    if constexpr (sizeof(type) == 64) {
      if constexpr (f32) return (type)_mm512_set1_ps(x); else return (type)_mm512_set1_pd(x);
    }
#endif
#if defined(__AVX__)
    if constexpr (sizeof(type) == 32) {
      if constexpr (f32) return (type)_mm256_set1_ps(x); else return (type)_mm256_set1_pd(x);
    }
#endif
    if constexpr (sizeof(type) == 16) {
      if constexpr (f32) return (type)_mm_set1_ps(x); else return (type)_mm_set1_pd(x);
    }
#endif
    type v;
    for (int l = 0; l < lanes; ++l) v[l] = x;
    return v;
  }
};

// dst[0..n) = src[0..n) with streaming stores from dst's first vector-aligned element on.
template <typename T>
inline void copy_streaming(T* dst, const T* src, int64_t n) {
  constexpr int L = Vec<T>::lanes;
  int64_t i = 0;
  for (; i < n && reinterpret_cast<uintptr_t>(dst + i) % (L * sizeof(T)) != 0; ++i) dst[i] = src[i];
  for (; i + L <= n; i += L) Vec<T>::store_streaming(dst + i, Vec<T>::load(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}

// Sums of L vectors (one per row), lane r of the result being the sum of vector r: pairwise even+odd
// lane shuffles halve the vector count each level, so L rows cost L - 1 adds instead of L (L - 1)
// dependent scalar adds.
template <typename T>
inline typename Vec<T>::type reduce_rows(typename Vec<T>::type* v) {
  constexpr int L = Vec<T>::lanes;
  for (int n = L; n > 1; n /= 2)
    for (int i = 0; i < n / 2; ++i)
      v[i] = __builtin_shuffle(v[2 * i], v[2 * i + 1], Vec<T>::even_lanes()) +
             __builtin_shuffle(v[2 * i], v[2 * i + 1], Vec<T>::odd_lanes());
  return v[0];
}

}  // namespace medkern::cpu
