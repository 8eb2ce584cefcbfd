"""``Predictor``: a trained model prepared once for inference, called from many threads at a time; one
worker thread gathers the callers' items into micro-batches and hands each caller its own rows back."""
from __future__ import annotations

import collections
import concurrent.futures
import math
import queue
import threading
import time
from pathlib import Path

import numpy as np
import torch

# numpy dtype kinds taken as numbers: floats, signed and unsigned integers (bool, complex, strings, objects,
# dates are refused).
_NUMERIC_KINDS = "fiu"


class InputError(ValueError):
    """An input the model cannot take (shape, channels, dtype, NaN or inf values, an unreadable body); the
    message names the problem. Raised in the caller's thread, before the input joins a batch."""


class _Job:
    __slots__ = ("x", "future", "enqueued")

    def __init__(self, x: torch.Tensor):
        self.x = x
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        self.enqueued = time.perf_counter()


_STOP = object()


def _load_model(source, layers: str | None):
    from .. import models
    from ..models.runs import MODEL_FILE

    if isinstance(source, models.Model):
        if layers is None or layers == source.layers:
            return source
        return type(source).from_state(source.state(), layers=layers)  # same weights, other layers
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            path = path / MODEL_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file (expected a run folder holding {MODEL_FILE}, or a "
                                    "saved model file)")
        model = models.load(path, layers=layers)  # torch.load(weights_only=True), see medkern.train.checkpoint
        if not isinstance(model, models.Model):
            raise ValueError(f"{path} holds a {type(model).__name__}, which has no predict(); serve a "
                             "classifier or forecaster")
        return model
    raise TypeError(f"Predictor takes a run folder, a saved model file or a medkern.models.Model, "
                    f"got {type(source).__name__}")


class Predictor:
    """A trained model, prepared for inference once (eval mode, no autograd, medkern's layers swapped in
    unless ``layers="torch"``) and warmed up, whose ``predict`` is safe to call from many threads.

    ``source`` is a run folder (as ``medkern train`` writes it), a saved model file, or a trained
    ``medkern.models.Model``. Calls are gathered by one worker thread into micro-batches of at most
    ``max_batch`` rows: it takes whatever is queued, and while callers arrive concurrently (the last batch
    held more than one call) it waits up to ``max_wait_ms`` after the first queued call for the batch to
    fill; a lone caller is never kept waiting. Every caller gets its own rows back, equal to an unbatched
    call within float32 rounding. Bad input raises ``InputError`` in the caller's thread and never joins a
    batch; an exception inside a batch is retried call by call, so it reaches only the call that caused it.

    >>> with Predictor("runs/lesions") as p:
    ...     probs = p.predict(images)      # (N, K) class probabilities
    """

    def __init__(self, source, *, max_batch: int = 32, max_wait_ms: float = 2.0, layers: str | None = None,
                 warmup: bool = True, on_batch=None):
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be a positive integer, got {max_batch!r}")
        if not (isinstance(max_wait_ms, (int, float)) and math.isfinite(max_wait_ms) and max_wait_ms >= 0):
            raise ValueError(f"max_wait_ms must be a finite number >= 0, got {max_wait_ms!r}")
        self.model = _load_model(source, layers)
        self.layers = self.model.layers
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000.0
        self.on_batch = on_batch  # called with the rows of each batch run (metrics)
        self.input_shape = self._item_shape()
        self.classes = (list(self.model.class_names) or [str(k) for k in range(self.model.shape["num_classes"])]
                        if self.model.TASK != "forecast" else [])
        network = self.model._require_network().eval()
        for p in network.parameters():
            p.requires_grad_(False)
        self.network = network
        self.device = next(network.parameters()).device
        self._outputs = self.model._objective(None, None).outputs  # softmax, or the forecast as is
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._carry: collections.deque = collections.deque()  # a call taken from the queue that did not fit
        self._closed = False
        self._close_lock = threading.Lock()
        self._concurrent = False  # did the last batch gather more than one call
        self.ready = threading.Event()
        self._worker = threading.Thread(target=self._loop, name="medkern-predictor", daemon=True)
        self._worker.start()
        if warmup:
            self.warmup()

    # -- shape and input checks ------------------------------------------------------------------------
    def _item_shape(self) -> tuple:
        shape = self.model.shape
        if "input_size" in shape:  # images and volumes
            return (int(shape["in_channels"]), *map(int, shape["input_size"]))
        return (int(shape["in_channels"]), int(shape["length"]))

    def _describe(self, shape) -> str:
        return "(" + ", ".join(str(s) for s in shape) + ")"

    def as_batch(self, x) -> torch.Tensor:
        """``x`` (one item or a batch: array, tensor or nested lists) as a float32 batch, checked against
        the model's input shape; ``InputError`` names what is wrong."""
        item = self.input_shape
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu()
            if x.dtype == torch.bool or x.is_complex():
                raise InputError(f"inputs have dtype {str(x.dtype).replace('torch.', '')}; send real numbers "
                                 "(floating point or integers)")
            arr = x
        else:
            try:
                arr = np.asarray(x)
            except (ValueError, TypeError) as e:  # ragged nested lists
                raise InputError(f"inputs are not a rectangular array of numbers ({e})") from None
            if arr.dtype.kind not in _NUMERIC_KINDS:
                what = "ragged or mixed nested lists" if arr.dtype.kind == "O" else f"dtype {arr.dtype}"
                raise InputError(f"inputs are {what}; send real numbers (floating point or integers) in an "
                                 f"array of shape {self._describe(item)} or (N, {', '.join(map(str, item))})")
        shape = tuple(arr.shape)
        if len(shape) == len(item):
            arr, shape = arr[None], (1, *shape)
        if len(shape) != len(item) + 1:
            raise InputError(f"inputs have shape {self._describe(shape)}; the model takes one item of shape "
                             f"{self._describe(item)} or a batch (N, {', '.join(map(str, item))})")
        if shape[0] == 0:
            raise InputError("inputs hold no items (a batch of 0)")
        if shape[1] != item[0]:
            raise InputError(f"inputs have {shape[1]} channels; the model takes {item[0]} "
                             f"(items of shape {self._describe(item)})")
        if shape[2:] != item[1:]:
            size = "x".join(map(str, shape[2:]))
            raise InputError(f"inputs are {size}; the model takes {'x'.join(map(str, item[1:]))} "
                             f"(items of shape {self._describe(item)})")
        # A copy: the caller may change its array while the batch waits.
        t = torch.tensor(arr, dtype=torch.float32) if not isinstance(arr, torch.Tensor) else \
            arr.to(torch.float32, copy=True)
        bad = t.numel() - int(torch.isfinite(t).sum())
        if bad:
            raise InputError(f"inputs hold {bad} NaN or infinite value(s) (after conversion to float32)")
        return t.contiguous()

    # -- the API --------------------------------------------------------------------------------------
    def submit(self, x) -> concurrent.futures.Future:
        """Queues ``x`` (checked here, in the caller's thread) and returns a future of its outputs, an
        ``(N, K)`` float32 array. ``asyncio.wrap_future`` makes it awaitable."""
        job = _Job(self.as_batch(x))
        with self._close_lock:  # so every call queued is ahead of close()'s stop mark
            if self._closed:
                raise RuntimeError("Predictor is closed")
            self._queue.put(job)
        return job.future

    def predict(self, x, timeout: float | None = None) -> np.ndarray:
        """Outputs of ``x`` (one item or a batch): class probabilities ``(N, K)``, or forecasts ``(N, horizon)``."""
        return self.submit(x).result(timeout)

    def predict_unbatched(self, x) -> np.ndarray:
        """``x`` run alone in this thread, bypassing the worker: the reference ``predict`` is compared with."""
        with torch.inference_mode():
            return self._outputs(self.network(self.as_batch(x).to(self.device))).cpu().numpy()

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Class indices from probabilities (the model's decision threshold for binary classifiers)."""
        return self.model.decide(probs)

    def warmup(self, rounds: int = 2) -> None:
        """Runs batches of 1, 2, 4, ... ``max_batch`` rows through the worker (allocator caches, kernel
        plans, lazy initialisation), then marks the predictor ready."""
        sizes, n = [], 1
        while n < self.max_batch:
            sizes.append(n)
            n *= 2
        sizes.append(self.max_batch)
        x = torch.rand(self.max_batch, *self.input_shape)
        for _ in range(rounds):
            for n in sizes:
                self.submit(x[:n]).result()
        self.ready.set()

    def close(self, timeout: float | None = 10.0) -> None:
        """Stops the worker after the calls already queued; later calls raise ``RuntimeError``."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._worker.join(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the worker -------------------------------------------------------------------------------------
    def _next(self, timeout: float | None):
        if self._carry:
            return self._carry.popleft()
        if timeout is None:
            return self._queue.get()
        if timeout <= 0:
            return self._queue.get_nowait()
        return self._queue.get(timeout=timeout)

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        batch, rows, stop = [first], len(first.x), False
        deadline = first.enqueued + self.max_wait
        while rows < self.max_batch:
            wait = deadline - time.perf_counter() if self._concurrent else 0.0
            try:
                job = self._next(wait)
            except queue.Empty:
                break
            if job is _STOP:
                stop = True
                break
            if rows + len(job.x) > self.max_batch:
                self._carry.append(job)  # runs first in the next batch
                break
            if not job.future.set_running_or_notify_cancel():
                continue  # cancelled while queued (its client went away)
            batch.append(job)
            rows += len(job.x)
        return batch, stop

    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self._next(None)
            if first is _STOP:
                break
            if not first.future.set_running_or_notify_cancel():
                continue  # cancelled while queued (its client went away)
            batch = [first]
            try:
                batch, stop = self._gather(first)
                self._concurrent = len(batch) > 1
                self._run(batch)
            except BaseException as e:  # noqa: BLE001 - a bug here must not strand the callers or the worker
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(e)
        while True:  # calls queued after close()
            try:
                job = self._next(0)
            except queue.Empty:
                break
            if job is not _STOP and job.future.set_running_or_notify_cancel():
                job.future.set_exception(RuntimeError("Predictor is closed"))

    def _forward(self, x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            outs = [self._outputs(self.network(x[i:i + self.max_batch].to(self.device))).cpu()
                    for i in range(0, len(x), self.max_batch)]
        return torch.cat(outs).numpy()

    def _run(self, batch: list[_Job]) -> None:
        try:
            x = batch[0].x if len(batch) == 1 else torch.cat([job.x for job in batch])
            out = self._forward(x)
        except BaseException as e:  # noqa: BLE001 - handed to the callers, the worker keeps going
            if len(batch) == 1:
                batch[0].future.set_exception(e)
            else:  # one call at a time, so that only the one at fault gets the exception
                for job in batch:
                    try:
                        job.future.set_result(self._forward(job.x))
                    except BaseException as e2:  # noqa: BLE001
                        job.future.set_exception(e2)
            return
        if self.on_batch is not None and self.ready.is_set():  # warm-up batches are not counted
            try:
                self.on_batch(len(x))
            except Exception:  # noqa: BLE001 - metrics must never fail a prediction
                pass
        start = 0
        for job in batch:
            n = len(job.x)
            job.future.set_result(out[start:start + n])
            start += n
