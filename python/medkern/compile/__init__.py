"""Whole networks for inference: ``torch.compile(model, backend="medkern")`` (registered as a
``torch_dynamo_backends`` entry point) and ``medkern.optimize(model)``."""
from .backend import Optimized, medkern_backend, optimize

__all__ = ["Optimized", "medkern_backend", "optimize"]
