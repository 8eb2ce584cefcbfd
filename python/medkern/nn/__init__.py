"""Drop-in ``torch.nn`` layers computed by medkern, and ``patch`` to swap them into a model."""
import torch

from .conv import Conv2d
from .patch import patch, register_swap

register_swap(torch.nn.Conv2d, Conv2d)

__all__ = ["Conv2d", "patch", "register_swap"]
