"""Drop-in BatchNorm modules: torch's classes (constructor, parameters, buffers, state_dict, momentum rules
including ``momentum=None``, ``track_running_stats=False``, eval mode) with the forward on
``medkern.ops.batch_norm``. ``medkern.patch`` sets ``fused_activation`` (``'relu'`` or ``'leaky_relu'`` with
``negative_slope``) where a ReLU or LeakyReLU follows the layer in an ``nn.Sequential``; the layer then applies
it in its own pass over the output, and the activation's slot becomes an ``nn.Identity``."""
from __future__ import annotations

import torch

from .. import ops


class _BatchNorm:
    fused_activation: str | None = None
    negative_slope: float = 0.0

    def forward(self, input):
        self._check_input_dim(input)
        # torch's _BatchNorm.forward: which statistics, and the running averages' factor.
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        batch_statistics = self.training or (self.running_mean is None and self.running_var is None)
        keep = not self.training or self.track_running_stats
        return ops.batch_norm(input, self.running_mean if keep else None, self.running_var if keep else None,
                              self.weight, self.bias, batch_statistics, factor, self.eps, self.fused_activation,
                              self.negative_slope)

    def extra_repr(self) -> str:
        act = {"relu": ", activation=relu", "leaky_relu": f", activation=leaky_relu({self.negative_slope})"}
        return super().extra_repr() + act.get(self.fused_activation, "")


class BatchNorm1d(_BatchNorm, torch.nn.BatchNorm1d):
    pass


class BatchNorm2d(_BatchNorm, torch.nn.BatchNorm2d):
    pass


class BatchNorm3d(_BatchNorm, torch.nn.BatchNorm3d):
    pass


SWAPS = {torch.nn.BatchNorm1d: BatchNorm1d, torch.nn.BatchNorm2d: BatchNorm2d, torch.nn.BatchNorm3d: BatchNorm3d}
