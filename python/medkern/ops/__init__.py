"""medkern's ops: functional forms with torch's signatures, each a ``torch.library`` custom op in the
``medkern`` namespace (``torch.ops.medkern.*``) with fake kernels and registered autograd."""
from .conv import conv1d, conv2d, conv3d, conv_transpose2d, conv_transpose3d
from .conv_plan import conv_paths, conv_plan, force_conv_path, forced_conv_path
from .gan_loss import gan_loss, gan_penalty
from .norm import batch_norm
from .pool import (adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d, adaptive_max_pool1d,
                   adaptive_max_pool2d, adaptive_max_pool3d, avg_pool1d, avg_pool2d, avg_pool3d, max_pool1d, max_pool2d,
                   max_pool3d)
from .rnn import gru, gru_cell, lstm, lstm_cell

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose2d", "conv_transpose3d", "conv_plan", "conv_paths", "force_conv_path", "forced_conv_path",
           "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
           "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
           "adaptive_max_pool3d", "batch_norm", "gan_loss", "gan_penalty",
           "lstm", "gru", "lstm_cell", "gru_cell"]
