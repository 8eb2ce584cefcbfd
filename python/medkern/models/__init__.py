"""Thin model API on ``medkern.nn``: ``ImageClassifier``, ``VolumeClassifier``, ``SequenceClassifier`` and
``SequenceForecaster``, each with ``fit``, ``evaluate``, ``predict``, ``save`` and ``load``, and
``ImageGAN`` with ``fit``, ``sample``, ``save`` and ``load``."""
from __future__ import annotations

from .base import FORMAT, HEADLINE, Classifier, Model, as_dataset
from .gan import ImageGAN
from .image import ImageClassifier
from .sequence import SequenceClassifier, SequenceForecaster
from .volume import VolumeClassifier

MODELS = {cls.__name__: cls for cls in (ImageClassifier, VolumeClassifier, SequenceClassifier, SequenceForecaster,
                                        ImageGAN)}
# The model each task trains; ``model_for`` swaps in the volume classifier where the data are volumes.
BY_TASK = {cls.TASK: cls for cls in (ImageClassifier, SequenceClassifier, SequenceForecaster, ImageGAN)}


def model_for(task: str, kind: str) -> type:
    """The model class that ``task`` trains on data of ``kind`` (``medkern.data.DataSplits.kind``)."""
    if kind == "volume":
        if task != "classify":
            raise ValueError(f"volumes are for the classify task, not {task!r}")
        return VolumeClassifier
    return BY_TASK[task]


def load(path, layers: str | None = None) -> "Model | ImageGAN":
    """The model saved at ``path`` by ``Model.save``, of whichever class it is."""
    from ..train import load_checkpoint

    state = load_checkpoint(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("class") not in MODELS:
        raise ValueError(f"{path}: not a saved medkern model (expected format {FORMAT!r})")
    return MODELS[state["class"]].from_state(state, layers=layers)


__all__ = ["BY_TASK", "HEADLINE", "MODELS", "Classifier", "ImageClassifier", "ImageGAN", "Model", "SequenceClassifier",
           "SequenceForecaster", "VolumeClassifier", "as_dataset", "load", "model_for"]
