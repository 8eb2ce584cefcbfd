"""Drop-in ``torch.nn`` layers computed by medkern, and ``patch`` to swap them into a model."""
from . import conv as _conv, norm as _norm, pool as _pool, rnn as _rnn
from .conv import Conv1d, Conv2d, Conv3d, ConvTranspose2d, ConvTranspose3d
from .norm import BatchNorm1d, BatchNorm2d, BatchNorm3d
from .patch import patch, register_swap
from .pool import (AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d, AdaptiveMaxPool1d, AdaptiveMaxPool2d,
                   AdaptiveMaxPool3d, AvgPool1d, AvgPool2d, AvgPool3d, MaxPool1d, MaxPool2d, MaxPool3d)
from .rnn import GRU, LSTM, GRUCell, LSTMCell

for _torch_cls, _medkern_cls in {**_conv.SWAPS, **_norm.SWAPS, **_pool.SWAPS, **_rnn.SWAPS}.items():
    register_swap(_torch_cls, _medkern_cls)

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose2d", "ConvTranspose3d", "BatchNorm1d", "BatchNorm2d",
           "BatchNorm3d", "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d",
           "AvgPool3d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d",
           "AdaptiveMaxPool2d", "AdaptiveMaxPool3d", "patch", "register_swap",
           "LSTM", "GRU", "LSTMCell", "GRUCell"]
