"""``ImageClassifier``: a small ResNet for 1- or 3-channel medical images of any size; ``ResNetClassifier``,
what it shares with ``VolumeClassifier``."""
from __future__ import annotations

import numpy as np
import torch

from ..data import ImageAugment
from .base import Classifier
from . import networks
from .networks import ResNet


class ResNetClassifier(Classifier):
    """A ``networks.ResNet`` over the spatial axes of inputs ``(N, C, *spatial)`` in [0, 1] (``INPUT_DIMS - 2``
    of them); channels, size and classes come from the training data."""

    NETWORK = ResNet
    TASK = "classify"

    def _extra_shape(self, ds):
        return {"input_size": [int(side) for side in ds.x.shape[2:]]}

    def _network_args(self):
        return {"in_channels": self.shape["in_channels"], "num_classes": self.shape["num_classes"],
                "input_size": min(self.shape["input_size"]), "dims": self.INPUT_DIMS - 2, **self.arch}

    def embed(self, x, batch_size: int = 256) -> np.ndarray:
        """Embeddings (N, channels) of inputs ``x``: the network's pooled last feature map. The synthesis
        metrics (Frechet and kernel distances, precision and recall) compare images in this space."""
        net = self._require_network()
        x = self._check_input(x, "x")
        net.eval()
        device = next(net.parameters()).device
        with torch.no_grad():
            return torch.cat([net.embed(x[i:i + batch_size].to(device)).cpu()
                              for i in range(0, len(x), batch_size)]).double().numpy()

    def cam_layer(self):
        """The modules whose outputs Grad-CAM explains: the last convolutional feature map of each
        network (one, or an ensemble's members)."""
        return [net.features for net in networks.members(self._require_network())]


class ImageClassifier(ResNetClassifier):
    """A ResNet of ``depth`` stages (``blocks`` basic blocks each, ``width`` channels doubling per stage)
    for images ``(N, C, H, W)`` in [0, 1]; channels, size and classes come from the training data.
    Training augments with horizontal flips, small rotations and shifts and intensity jitter; with
    ``flip_average`` predictions average over the image and its left-right mirror image (off by default; the
    time-budget recipe, ``medkern.train.recipe``, turns it on where it helps on validation).

    >>> model = ImageClassifier(width=16).fit(splits.train, splits.val, epochs=20)
    >>> model.evaluate(splits.test)["auroc"]
    """

    ARCH = {"width": 32, "depth": 3, "blocks": 1, "dropout": 0.1, "flip_average": False}
    TRAIN = {**Classifier.TRAIN, "epochs": 60, "batch_size": 32, "lr": 2e-3, "weight_decay": 5e-4, "patience": 20}
    INPUT_DIMS = 4

    def _network_args(self):
        # ImageAugment flips left and right only: up and down are not views the network learns to see alike.
        return {**super()._network_args(), "flip_axes": (-1,)}

    def _augment(self):
        return ImageAugment()
