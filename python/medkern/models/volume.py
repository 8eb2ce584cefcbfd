"""``VolumeClassifier``: a small 3-D ResNet for CT and MRI volumes."""
from __future__ import annotations

from ..data import VolumeAugment
from . import networks
from .base import Classifier
from .image import ResNetClassifier


class VolumeClassifier(ResNetClassifier):
    """A 3-D ResNet of ``depth`` stages (``blocks`` basic blocks each, ``width`` channels doubling per stage)
    for volumes ``(N, C, D, H, W)`` in [0, 1], after a stem of stride ``stem_stride``; channels, size and
    classes come from the training data. Training augments with flips along every axis, small rotations and
    shifts and intensity jitter; with ``flip_average`` (on by default, off when training without
    augmentation) predictions average over the volume's mirror images (``networks.ResNet``).

    The training defaults were chosen on VesselMNIST3D's validation split to train in minutes on two cores.
    The weight average (``ema=0.99``, about the last 100 steps) suits runs of several hundred steps or more;
    pass ``ema=None`` for shorter ones. Flips mirror left and right: for labels that name a side, train with
    ``augment=False``.

    >>> model = VolumeClassifier().fit(splits.train, splits.val)
    >>> model.evaluate(splits.test)["auroc"]
    """

    ARCH = {"width": 16, "depth": 4, "blocks": 1, "dropout": 0.1, "stem_stride": 2, "flip_average": True}
    TRAIN = {**Classifier.TRAIN, "epochs": 40, "batch_size": 32, "lr": 2e-3, "weight_decay": 5e-4, "patience": None,
             "ema": 0.99}
    INPUT_DIMS = 5

    def _augment(self):
        return VolumeAugment()

    def _prepare(self, train):
        # Validation while training sees one view: all mirror images would cost 8 forward passes an epoch.
        self._average_flips(False)

    def _after_fit(self, val, config):
        # Mirror images are views the network learned to see alike only when it trained on them.
        if not config.augment:
            self.arch = {**self.arch, "flip_average": False}
        self._average_flips(self.arch["flip_average"])
        super()._after_fit(val, config)

    def cam_layer(self):
        """The modules whose outputs Grad-CAM explains: the last block before the last stage (4x4x4 for a
        28^3 volume, where the last stage's 2x2x2 map is too coarse to point at anything in a slice), or
        with one stage its last block; one per network (an ensemble's members)."""
        before_last_stage = self.arch["blocks"] * (self.arch["depth"] - 1)
        return [net.features[before_last_stage - 1 if before_last_stage else -1]
                for net in networks.members(self._require_network())]

    def _average_flips(self, on: bool) -> None:
        for net in networks.members(self.network):
            net.flip_average = on
