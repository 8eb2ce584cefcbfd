"""The ``numba`` backend on GPUs: ``numba.cuda`` kernels."""
import os

_SIMULATED = "numba.cuda is running under NUMBA_ENABLE_CUDASIM (the CPU simulator), not a GPU"


def availability() -> dict[str, str | None]:
    # Every failure is a reason, never an exception: a broken numba install must not break medkern.
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0").strip() not in ("", "0"):
        return {"cuda": _SIMULATED}
    try:
        import numba
        from numba import cuda
    except ModuleNotFoundError as exc:
        if exc.name == "numba":
            return {"cuda": "numba is not installed (pip install 'medkern[numba]')"}
        return {"cuda": f"numba.cuda is not importable ({type(exc).__name__}: {exc})"}
    except Exception as exc:  # noqa: BLE001
        return {"cuda": f"numba.cuda is not importable ({type(exc).__name__}: {exc})"}
    try:
        if numba.config.ENABLE_CUDASIM:  # the variable was set when numba was first imported
            return {"cuda": _SIMULATED}
        if cuda.is_available():
            return {"cuda": None}
        try:  # is_available() swallows the driver's reason; ask for it
            cuda.get_current_device()
        except Exception as exc:  # noqa: BLE001
            return {"cuda": "numba.cuda finds no usable GPU: " + " ".join(str(exc).split()).rstrip(" :")}
        return {"cuda": "numba.cuda finds no usable GPU or driver"}
    except Exception as exc:  # noqa: BLE001
        return {"cuda": f"numba.cuda failed to query devices: {type(exc).__name__}: {exc}"}
