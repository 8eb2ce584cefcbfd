"""Backend selection: which implementation of each kernel family runs for a given device.

Backends are ``native`` (medkern's C++/CUDA kernels; the default), ``numba`` (``@njit`` on the CPU,
``numba.cuda`` on GPUs), ``cupy`` (CuPy raw kernels, GPU only) and ``reference`` (plain torch ops: the
test oracle). Select one with ``with medkern.backends.use("numba"): ...`` or the ``MEDKERN_BACKEND``
environment variable (read once, at the first op). Asking for a backend that cannot run here is an error
that says why, never a silent fallback to another backend.

Beyond its required functions, a family module may have optional entries (``CONTRACT.md`` lists them);
it declares which, per device type, in ``OPTIONAL``, and the ops ask ``optional(...)`` / ``has(...)``
rather than trying a call.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import os
from dataclasses import dataclass, field
from types import ModuleType

# backend name -> device type -> package implementing it
_PACKAGES: dict[str, dict[str, str]] = {
    "native": {"cpu": "medkern.backends.native", "cuda": "medkern.backends.native"},
    "numba": {"cpu": "medkern.backends.numba_cpu", "cuda": "medkern.backends.numba_cuda"},
    "cupy": {"cuda": "medkern.backends.cupy_"},
    "reference": {"cpu": "medkern.backends.reference", "cuda": "medkern.backends.reference"},
}
NAMES = tuple(_PACKAGES)
DEFAULT = "native"


class BackendUnavailableError(RuntimeError):
    """The selected backend cannot run here (or not on this device); the message says why."""


@dataclass(frozen=True)
class BackendStatus:
    name: str
    devices: dict[str, str | None] = field(default_factory=dict)  # device type -> None if usable, else why not

    @property
    def usable_devices(self) -> tuple[str, ...]:
        return tuple(d for d, why in self.devices.items() if why is None)

    def __bool__(self) -> bool:
        return bool(self.usable_devices)

    def __str__(self) -> str:
        parts = [f"{d}: {'ok' if why is None else 'unavailable (' + why + ')'}" for d, why in self.devices.items()]
        return f"{self.name}: " + "; ".join(parts)


@functools.lru_cache(maxsize=None)
def _status(name: str) -> BackendStatus:
    devices: dict[str, str | None] = {}
    for device, package in _PACKAGES[name].items():
        try:
            reasons = importlib.import_module(package).availability()
            devices[device] = reasons.get(device, f"{package} does not serve {device}")
        except Exception as exc:  # a broken optional dependency must not break medkern's import
            devices[device] = f"{type(exc).__name__}: {exc}"
    return BackendStatus(name, devices)


def available() -> dict[str, BackendStatus]:
    """Every backend with, per device type, ``None`` if it works here or the reason it does not.

    ``bool(status)`` is true when the backend serves at least one device here."""
    return {name: _status(name) for name in NAMES}


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name not in _PACKAGES:
        raise ValueError(f"backend: unknown backend {name!r}; choose one of {', '.join(NAMES)}")
    return name


@functools.lru_cache(maxsize=None)
def _env_default() -> str:
    """``MEDKERN_BACKEND``, read once (every op asks for the current backend)."""
    name = os.environ.get("MEDKERN_BACKEND", DEFAULT)
    try:
        return _check_name(name)
    except ValueError as exc:
        raise ValueError(f"MEDKERN_BACKEND: {exc}") from None


_selected: contextvars.ContextVar[str | None] = contextvars.ContextVar("medkern_backend", default=None)


def current() -> str:
    """The backend name in force for this thread/task."""
    return _selected.get() or _env_default()


@contextlib.contextmanager
def use(name: str):
    """Run the enclosed block with backend ``name``. Raises at once if it serves no device here."""
    _check_name(name)
    status = _status(name)
    if not status:
        raise BackendUnavailableError(f"backend {name!r} is not available here: {status}")
    token = _selected.set(name)
    try:
        yield name
    finally:
        _selected.reset(token)


_families: dict[tuple[str, str, str], ModuleType] = {}


def for_tensor(family_name: str, t) -> ModuleType:
    """``family(family_name, t's device type)`` in the current backend. ``is_cpu`` first: it costs a tenth
    of ``t.device.type`` (0.05 against 0.55 us), and the ops ask once per kernel call."""
    return family(family_name, "cpu" if t.is_cpu else t.device.type)


def family(family_name: str, device_type: str, name: str | None = None) -> ModuleType:
    """The module implementing ``family_name`` (e.g. ``"conv"``) for ``device_type`` in backend ``name``
    (default: the current one)."""
    name = name or current()
    key = (name, family_name, device_type)
    mod = _families.get(key)
    if mod is None:
        package = _PACKAGES[_check_name(name)].get(device_type)
        if package is None:
            raise BackendUnavailableError(
                f"backend {name!r} has no {device_type} implementation "
                f"(it serves: {', '.join(_PACKAGES[name])})")
        why = _status(name).devices.get(device_type)
        if why is not None:
            raise BackendUnavailableError(f"backend {name!r} cannot run on {device_type}: {why}")
        mod = importlib.import_module(f"{package}.{family_name}")
        _families[key] = mod
    return mod


def entry(family_name: str, t, entry_name: str):
    """The required entry ``entry_name`` of ``family_name`` for ``t``'s device in the current backend.
    A backend that does not have it yet (a family's newer entries, such as its 3-d ones) raises
    ``BackendUnavailableError`` naming the backend and the entry, rather than an AttributeError."""
    mod = for_tensor(family_name, t)
    fn = getattr(mod, entry_name, None)
    if fn is None:
        raise BackendUnavailableError(f"backend {current()!r} has no {entry_name} kernel (for {family_name}); "
                                      f"select another with medkern.backends.use(...)")
    return fn


_NO_OPTIONAL: dict[str, frozenset[str]] = {}


def _declares(mod: ModuleType, device_type: str, entry: str) -> bool:
    return entry in getattr(mod, "OPTIONAL", _NO_OPTIONAL).get(device_type, ())


def has(family_name: str, device_type: str, entry: str, name: str | None = None) -> bool:
    """Whether backend ``name``'s (default: the current one) ``family_name`` module has the optional entry
    ``entry`` on ``device_type``: its ``OPTIONAL`` (device type -> set of entry names) lists it there.
    Raises ``BackendUnavailableError`` as ``family`` does where the backend cannot serve that device."""
    return _declares(family(family_name, device_type, name), device_type, entry)


# (backend, family, device type, entry) -> the module that declares the entry there, or None
_optional: dict[tuple[str, str, str, str], ModuleType | None] = {}


def optional(family_name: str, t, entry: str):
    """The optional entry ``entry`` of ``family_name`` for ``t``'s device in the current backend, or None
    where that backend does not have it on that device (the ops then compose required entries instead).

    One dict look-up once answered (a cell step asks on every call); the function itself is read from
    its module each time, so a patched module is seen."""
    key = (current(), family_name, "cpu" if t.is_cpu else t.device.type, entry)
    mod = _optional.get(key, _optional)
    if mod is _optional:
        try:
            mod = family(family_name, key[2], key[0])
        except ModuleNotFoundError as e:  # a family of optional entries only, which this backend has none of
            if not (e.name or "").endswith(f".{family_name}"):
                raise
            mod = None
        mod = _optional[key] = mod if mod is not None and _declares(mod, key[2], entry) else None
    return None if mod is None else getattr(mod, entry)
