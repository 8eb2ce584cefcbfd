"""Serving a trained model: ``Predictor`` (in-process, thread-safe, micro-batching) and ``create_app`` (the
FastAPI app behind ``medkern serve``; needs the ``serve`` extra: ``pip install medkern[serve]``)."""
from __future__ import annotations

from .predictor import InputError, Predictor


def create_app(*args, **kwargs):
    """The HTTP app (``POST /predict``, ``GET /health``, ``GET /metrics``); see ``medkern.serving.app``."""
    from .app import create_app as create

    return create(*args, **kwargs)


__all__ = ["InputError", "Predictor", "create_app"]
