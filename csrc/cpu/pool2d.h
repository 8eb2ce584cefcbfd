#pragma once
#include "../common/pool2d_params.h"

namespace medkern::cpu {

// Every function writes its whole output; planes are spread over the OpenMP threads.
template <typename T> void max_pool2d_forward(const Pool2dArgs<T>& a);        // y, and indices if non-null
template <typename T> void avg_pool2d_forward(const Pool2dArgs<T>& a);
template <typename T> void avg_pool2d_backward(const Pool2dArgs<T>& a);
template <typename T> void adaptive_avg_pool2d_forward(const Pool2dArgs<T>& a);
template <typename T> void adaptive_avg_pool2d_backward(const Pool2dArgs<T>& a);
template <typename T> void adaptive_max_pool2d_forward(const Pool2dArgs<T>& a);  // y and indices
// Max pooling of either kind: dx = 0, then dx[plane, indices] += dy. Indices outside the plane are
// skipped and counted; the count is returned so the caller can raise.
template <typename T> int64_t max_pool2d_backward(const Pool2dArgs<T>& a);
// The same gradient without indices: the winners are found again from the input x (torch's rule).
template <typename T> void max_pool2d_backward_from_input(const Pool2dArgs<T>& a);

}  // namespace medkern::cpu
