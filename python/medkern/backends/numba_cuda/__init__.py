"""The ``numba`` backend on GPUs: ``numba.cuda`` kernels."""
import os


def availability() -> dict[str, str | None]:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return {"cuda": "numba.cuda is running under NUMBA_ENABLE_CUDASIM (the CPU simulator), not a GPU"}
    try:
        from numba import cuda

        if not cuda.is_available():
            return {"cuda": "numba.cuda finds no usable GPU or driver"}
    except Exception as exc:
        return {"cuda": f"numba.cuda is not importable ({exc})"}
    return {"cuda": None}
