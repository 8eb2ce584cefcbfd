"""The ``reference`` backend: plain torch ops, the oracle every other backend is tested against."""


def availability() -> dict[str, str | None]:
    import torch

    return {"cpu": None, "cuda": None if torch.cuda.is_available() else "torch sees no CUDA device"}
