#pragma once
#include "../common/pool3d_params.h"

namespace medkern::cpu {

// Every function writes its whole output; volumes (and, forward, output slices) are spread over the threads.
// The max-pool backward of a volume is max_pool2d_backward over (N, C, 1, D*H*W) planes: the flat indices are
// the same.
template <typename T> void max_pool3d_forward(const Pool3dArgs<T>& a);  // y, and indices if non-null
template <typename T> void avg_pool3d_forward(const Pool3dArgs<T>& a);
template <typename T> void avg_pool3d_backward(const Pool3dArgs<T>& a);
template <typename T> void adaptive_avg_pool3d_forward(const Pool3dArgs<T>& a);
template <typename T> void adaptive_avg_pool3d_backward(const Pool3dArgs<T>& a);
template <typename T> void adaptive_max_pool3d_forward(const Pool3dArgs<T>& a);  // y and indices

}  // namespace medkern::cpu
