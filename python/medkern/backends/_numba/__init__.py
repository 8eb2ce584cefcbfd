"""Arithmetic shared by the numba CPU and numba.cuda backends: plain Python functions that each backend
compiles for its target (``numba.njit`` or ``cuda.jit(device=True)``), so both compute one definition."""
