"""Drop-in convolution modules: torch's classes with the forward routed to medkern's ops, so the
constructor, parameter names, initialisation and state_dict are torch's own."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from .. import ops


class Conv2d(torch.nn.Conv2d):
    """``torch.nn.Conv2d`` computed by medkern (any backend, any padding_mode)."""

    def _conv_forward(self, input, weight, bias):
        if self.padding_mode != "zeros":
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return ops.conv2d(input, weight, bias, self.stride, _pair(0), self.dilation, self.groups)
        return ops.conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)
