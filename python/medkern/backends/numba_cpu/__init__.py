"""The ``numba`` backend on the CPU: ``@njit(parallel=True)`` kernels."""


def availability() -> dict[str, str | None]:
    try:
        import numba  # noqa: F401
    except Exception as exc:  # ImportError, or a numba/numpy version mismatch
        return {"cpu": f"numba is not importable ({exc}); pip install 'medkern[numba]'"}
    return {"cpu": None}
