"""The HTTP face of a ``Predictor`` (FastAPI; uvicorn runs it in ``medkern serve``):

- ``POST /predict``: a JSON body ``{"inputs": [...]}`` (one item or a batch, nested lists), an ``.npy`` body
  (``application/octet-stream`` or ``application/x-npy``), an image (``image/png``, ``image/jpeg``; image
  models only, resized and converted as in training) or a ``multipart/form-data`` upload of one of these;
  answers ``{"probabilities": [[...]], "labels": [...], "classes": [...]}`` (forecasters: ``{"forecast": ...}``).
- ``GET /health``: 200 once warmed up (503 before), with the input shape of one item, the classes and the
  medkern version.
- ``GET /metrics``: Prometheus text format: requests by status, errors, latency, batch sizes.

Bad input gets a 4xx whose ``detail`` names the problem: 400 an unreadable body (JSON, ``.npy``, image),
413 a body over ``max_body_bytes``, 415 an unknown content type, 422 wrong shape, channels, dtype or
NaN/inf values; 503 while warming up."""
from __future__ import annotations

import asyncio
import contextlib
import io
import json
import threading
import time

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest)

from .predictor import InputError, Predictor

try:
    import orjson
except ImportError:  # optional: the standard json module reads the same bodies, slower
    orjson = None

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_IMAGE_PIXELS = 4096 * 4096  # decoded size allowed for an uploaded image (a small PNG can decode huge)
NPY_TYPES = ("application/octet-stream", "application/x-npy", "application/npy")
IMAGE_TYPES = ("image/png", "image/jpeg", "image/jpg")
JSON_TYPES = ("application/json",)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25,
                   0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class _Metrics:
    def __init__(self):
        disable_created_metrics()  # no *_created series: they only double the output
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("medkern_predict_requests", "POST /predict requests, by HTTP status", ["status"],
                                registry=r)
        self.errors = Counter("medkern_predict_errors", "POST /predict requests answered with an error, by "
                              "HTTP status", ["status"], registry=r)
        self.latency = Histogram("medkern_predict_latency_seconds", "POST /predict time from request to answer",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch = Histogram("medkern_batch_size", "rows in each micro-batch the model ran",
                               buckets=BATCH_BUCKETS, registry=r)
        self.items = Counter("medkern_predicted_items", "items predicted", registry=r)
        self.ready = Gauge("medkern_ready", "1 once the model is warmed up", registry=r)


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body of {int(declared)} bytes is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _loads(body: bytes):
    if orjson is not None:
        try:
            return orjson.loads(body)  # several times faster on long number lists
        except orjson.JSONDecodeError:
            pass  # the standard parser reads NaN/Infinity (refused later, by name) and words its errors better
    return json.loads(body)


def _from_json(body: bytes):
    try:
        doc = _loads(body)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise HTTPException(400, f"body is not valid JSON ({type(e).__name__}: {e})") from None
    if not isinstance(doc, dict) or "inputs" not in doc:
        raise HTTPException(422, 'JSON body must be an object {"inputs": [...]} holding one item or a batch '
                                 'as nested lists')
    inputs = doc["inputs"]
    if not isinstance(inputs, list):
        raise HTTPException(422, f'"inputs" must be nested lists of numbers, got {type(inputs).__name__}')
    try:
        arr = np.array(inputs)
    except (ValueError, TypeError, RecursionError) as e:
        raise HTTPException(422, f'"inputs" are not a rectangular array of numbers ({e})') from None
    if arr.dtype.kind in "OUSb":
        what = "ragged or mixed nested lists" if arr.dtype.kind == "O" else (
            "booleans" if arr.dtype.kind == "b" else "strings")
        raise HTTPException(422, f'"inputs" hold {what}; send numbers in nested lists of one item\'s shape '
                                 "or a batch of them")
    return arr


def _from_npy(body: bytes):
    try:
        return np.load(io.BytesIO(body), allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise HTTPException(422, ".npy body holds Python objects (dtype object); send a numeric array") from None
        raise HTTPException(400, f"body is not a readable .npy array ({e})") from None
    except (OSError, EOFError) as e:
        raise HTTPException(400, f"body is not a readable .npy array ({type(e).__name__}: {e})") from None


def _from_image(body: bytes, predictor: Predictor):
    from PIL import Image, UnidentifiedImageError

    from ..data.errors import DataFileError
    from ..data.image_folder import _read_image

    if predictor.model.INPUT_DIMS != 4:
        raise HTTPException(415, f"an image, but the model ({type(predictor.model).__name__}) does not take images; "
                                 "send JSON or .npy")
    try:
        with Image.open(io.BytesIO(body)) as im:  # reads the header only
            w, h = im.size
    except UnidentifiedImageError:
        raise HTTPException(400, "body is not a readable PNG/JPEG image (Pillow cannot identify it)") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise HTTPException(400, f"body is not a readable PNG/JPEG image ({type(e).__name__}: {e})") from None
    if w * h > MAX_IMAGE_PIXELS:
        raise HTTPException(413, f"image of {w}x{h} pixels is over the limit of {MAX_IMAGE_PIXELS} pixels")
    channels, (size, _) = predictor.input_shape[0], predictor.input_shape[1:]
    try:
        return _read_image(io.BytesIO(body), size, channels)  # resized and scaled to [0, 1] as in training
    except DataFileError as e:
        raise HTTPException(400, f"body is not a readable PNG/JPEG image ({e.problem})") from None
    except (OSError, ValueError, SyntaxError) as e:  # truncated data surfaces on decoding
        raise HTTPException(400, f"body is not a readable PNG/JPEG image ({type(e).__name__}: {e})") from None


def _parse(kind: str, body: bytes, predictor: Predictor):
    if kind in JSON_TYPES:
        return _from_json(body)
    if kind in NPY_TYPES:
        return _from_npy(body)
    if kind in IMAGE_TYPES:
        return _from_image(body, predictor)
    raise HTTPException(415, f"unsupported content type {kind or '(none)'!r}: send application/json "
                             '{"inputs": [...]}, an .npy array (application/octet-stream or application/x-npy), '
                             "an image (image/png, image/jpeg) or one of these as a multipart/form-data file")


async def _parse_multipart(request: Request, predictor: Predictor, limit: int):
    try:
        form = await request.form(max_files=1, max_fields=8, max_part_size=limit)
    except AssertionError as e:  # starlette without python-multipart
        raise HTTPException(415, f"multipart uploads need python-multipart ({e})") from None
    except Exception as e:  # noqa: BLE001 - starlette's MultiPartException and parser errors
        raise HTTPException(400, f"unreadable multipart/form-data body ({e})") from None
    try:
        files = [v for v in form.values() if hasattr(v, "read")]
        if len(files) != 1:
            raise HTTPException(422, f"multipart/form-data body must carry one file, got {len(files)}")
        upload = files[0]
        body = await upload.read()
        kind = (upload.content_type or "").split(";")[0].strip().lower()
        name = (upload.filename or "").lower()
        if kind not in (*JSON_TYPES, *NPY_TYPES, *IMAGE_TYPES) or kind == "application/octet-stream":
            kind = ("application/x-npy" if name.endswith(".npy") else "image/png" if name.endswith(".png") else
                    "image/jpeg" if name.endswith((".jpg", ".jpeg")) else "application/json"
                    if name.endswith(".json") else kind)
        return _parse(kind, body, predictor)
    finally:
        await form.close()


def create_app(source, *, max_batch: int = 32, max_wait_ms: float = 2.0, layers: str | None = None,
               max_body_bytes: int = MAX_BODY_BYTES, background_warmup: bool = True) -> FastAPI:
    """The app serving ``source``: a ``Predictor`` (used as it is, and closed with the app), or what
    ``Predictor`` takes (a run folder, a model file, a ``Model``), loaded now and warmed up when the app
    starts, in the background (``/health`` answers 503 until then) unless ``background_warmup`` is False."""
    import medkern

    metrics = _Metrics()
    if isinstance(source, Predictor):
        predictor = source
        predictor.on_batch = metrics.batch.observe
    else:
        predictor = Predictor(source, max_batch=max_batch, max_wait_ms=max_wait_ms, layers=layers, warmup=False,
                              on_batch=metrics.batch.observe)

    def warm():
        predictor.warmup()
        metrics.ready.set(1)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if not predictor.ready.is_set():
            if background_warmup:
                threading.Thread(target=warm, name="medkern-warmup", daemon=True).start()
            else:
                warm()
        else:
            metrics.ready.set(1)
        yield
        predictor.close()

    app = FastAPI(title="medkern", version=medkern.__version__, lifespan=lifespan,
                  summary=f"{type(predictor.model).__name__} ({predictor.layers} layers)")
    app.state.predictor, app.state.metrics = predictor, metrics
    classes = predictor.classes
    forecast = predictor.model.TASK == "forecast"

    @app.get("/health")
    def health():
        info = {"status": "ok" if predictor.ready.is_set() else "warming up",
                "model": type(predictor.model).__name__, "task": predictor.model.TASK,
                "input_shape": list(predictor.input_shape), "classes": classes, "layers": predictor.layers,
                "max_batch": predictor.max_batch, "max_wait_ms": predictor.max_wait * 1000,
                "medkern_version": medkern.__version__}
        return JSONResponse(info, status_code=200 if predictor.ready.is_set() else 503)

    @app.get("/metrics")
    def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def run(request: Request) -> JSONResponse:
        if not predictor.ready.is_set():
            raise HTTPException(503, "the model is warming up; retry when GET /health answers 200")
        kind = _content_type(request)
        if kind == "multipart/form-data":
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
                raise HTTPException(413, f"request body of {int(declared)} bytes is over the limit of "
                                         f"{max_body_bytes} bytes")
            arr = await _parse_multipart(request, predictor, max_body_bytes)
        else:
            if kind not in (*JSON_TYPES, *NPY_TYPES, *IMAGE_TYPES):
                _parse(kind, b"", predictor)  # raises the 415
            arr = _parse(kind, await _read_body(request, max_body_bytes), predictor)
        try:
            future = predictor.submit(arr)
        except InputError as e:
            raise HTTPException(422, str(e)) from None
        out = await asyncio.wrap_future(future)
        metrics.items.inc(len(out))
        if forecast:
            return JSONResponse({"forecast": out.tolist()})
        labels = predictor.decide(out)
        return JSONResponse({"probabilities": out.tolist(), "labels": [classes[int(k)] for k in labels],
                             "classes": classes})

    @app.post("/predict")
    async def predict(request: Request):
        start, status = time.perf_counter(), 500
        try:
            response = await run(request)
            status = 200
            return response
        except HTTPException as e:
            status = e.status_code
            metrics.errors.labels(str(e.status_code)).inc()
            raise
        except Exception:
            metrics.errors.labels("500").inc()
            raise
        finally:
            metrics.requests.labels(str(status)).inc()
            metrics.latency.observe(time.perf_counter() - start)

    return app


def serve(run_dir, *, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 32, max_wait_ms: float = 2.0,
          layers: str | None = None, max_body_bytes: int = MAX_BODY_BYTES, log_level: str = "warning") -> None:
    """Serves ``run_dir``'s model with uvicorn until interrupted."""
    import uvicorn

    app = create_app(run_dir, max_batch=max_batch, max_wait_ms=max_wait_ms, layers=layers,
                     max_body_bytes=max_body_bytes)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
