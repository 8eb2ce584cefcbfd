"""Thin model API on ``medkern.nn``: ``ImageClassifier``, ``SequenceClassifier`` and
``SequenceForecaster``, each with ``fit``, ``evaluate``, ``predict``, ``save`` and ``load``, and
``ImageGAN`` with ``fit``, ``sample``, ``save`` and ``load``."""
from __future__ import annotations

from .base import FORMAT, HEADLINE, Classifier, Model, as_dataset
from .gan import ImageGAN
from .image import ImageClassifier
from .sequence import SequenceClassifier, SequenceForecaster

MODELS = {cls.__name__: cls for cls in (ImageClassifier, SequenceClassifier, SequenceForecaster, ImageGAN)}
BY_TASK = {cls.TASK: cls for cls in MODELS.values()}


def load(path, layers: str | None = None) -> "Model | ImageGAN":
    """The model saved at ``path`` by ``Model.save``, of whichever class it is."""
    from ..train import load_checkpoint

    state = load_checkpoint(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("class") not in MODELS:
        raise ValueError(f"{path}: not a saved medkern model (expected format {FORMAT!r})")
    return MODELS[state["class"]].from_state(state, layers=layers)


__all__ = ["BY_TASK", "HEADLINE", "MODELS", "Classifier", "ImageClassifier", "ImageGAN", "Model", "SequenceClassifier",
           "SequenceForecaster", "as_dataset", "load"]
