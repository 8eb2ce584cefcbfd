"""medkern's ops: functional forms with torch's signatures, each a ``torch.library`` custom op in the
``medkern`` namespace (``torch.ops.medkern.*``) with fake kernels and registered autograd."""
from .conv import conv2d

__all__ = ["conv2d"]
