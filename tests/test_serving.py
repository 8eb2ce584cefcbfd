"""medkern.serving: the thread-safe, micro-batching ``Predictor``, and ``medkern serve`` (FastAPI on uvicorn)
started in a child process on a free local port, sent good and bad requests, and stopped."""
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from medkern.data import synthetic_lesions
from medkern.models import ImageClassifier
from medkern.serving import InputError, Predictor

SIZE = 16  # small images keep the tiny model's training and every request fast


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder as ``medkern train`` leaves it (only model.pt matters here)."""
    data = synthetic_lesions(48, size=SIZE, seed=3)
    model = ImageClassifier(width=4, depth=2)
    model.class_names = ["benign", "malignant"]
    model.fit(data, data, epochs=1, batch_size=16, progress=False, log=lambda s: None)
    out = tmp_path_factory.mktemp("run")
    model.save(out / "model.pt")
    return out


@pytest.fixture(scope="module")
def predictor(run_dir):
    with Predictor(run_dir, max_batch=8, max_wait_ms=20) as p:
        yield p


def _items(n, seed=0):
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


# -- the in-process predictor -------------------------------------------------------------------------------
def test_predictor_loads_warms_up_and_matches_the_model(run_dir, predictor):
    from medkern.models import load

    assert predictor.ready.is_set() and predictor.input_shape == (3, SIZE, SIZE)
    assert predictor.classes == ["benign", "malignant"] and predictor.layers == "medkern"
    assert not any(p.requires_grad for p in predictor.network.parameters()) and not predictor.network.training
    x = _items(5)
    want = load(run_dir / "model.pt").predict(x)
    np.testing.assert_allclose(predictor.predict(x), want, atol=1e-5)
    one = predictor.predict(x[0])  # one item is a batch of one
    assert one.shape == (1, 2)
    np.testing.assert_allclose(one, want[:1], atol=1e-5)
    np.testing.assert_allclose(predictor.predict(x.numpy().tolist()), want, atol=1e-5)  # nested lists


def test_many_threads_each_get_their_own_rows_in_micro_batches(predictor):
    sizes = []
    predictor.on_batch = sizes.append
    xs = [_items(1 + i % 3, seed=i) for i in range(48)]
    want = [predictor.predict_unbatched(x) for x in xs]
    got, errors = [None] * len(xs), []
    start = threading.Barrier(16)

    def client(k):
        start.wait()
        try:
            for i in range(k, len(xs), 16):
                got[i] = predictor.predict(xs[i], timeout=60)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        predictor.on_batch = None
    assert not errors
    for g, w, x in zip(got, want, xs):
        assert g.shape == (len(x), 2)
        np.testing.assert_allclose(g, w, atol=1e-5)
    assert max(sizes) > 1, sizes  # calls were gathered
    assert max(sizes) <= predictor.max_batch and sum(sizes) == sum(len(x) for x in xs)


@pytest.mark.parametrize("bad,message", [
    (torch.rand(2, 1, SIZE, SIZE), "1 channels; the model takes 3"),
    (torch.rand(SIZE, SIZE), "shape (16, 16)"),
    (torch.rand(1, 3, SIZE + 1, SIZE), "17x16; the model takes 16x16"),
    (np.full((3, SIZE, SIZE), np.nan), "NaN or infinite"),
    (torch.full((1, 3, SIZE, SIZE), float("inf")), "NaN or infinite"),
    (np.float64(1e300) * np.ones((3, SIZE, SIZE)), "NaN or infinite"),  # overflows float32
    (np.zeros((3, SIZE, SIZE), dtype=np.complex64), "dtype complex64"),
    (np.zeros((3, SIZE, SIZE), dtype=bool), "dtype bool"),
    ([[1.0, 2.0], [3.0]], "not a rectangular array"),
    ("a picture", "dtype <U9"),
    (np.zeros((0, 3, SIZE, SIZE)), "no items"),
])
def test_bad_input_raises_in_the_callers_thread(predictor, bad, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        predictor.predict(bad)


def test_a_bad_call_never_poisons_the_batch_of_others(run_dir):
    """Bad input is refused before it joins a batch; a failure inside a batch is retried call by call."""
    with Predictor(run_dir, max_batch=16, max_wait_ms=50) as p:
        real = p._forward

        def forward(x):  # a fault triggered by one caller's data, not caught by the input checks
            if (x == 0.5).all(dim=(1, 2, 3)).any():
                raise RuntimeError("kernel fault")
            return real(x)

        p._forward = forward
        p._concurrent = True  # wait for the batch to fill, as under load
        good = [_items(1, seed=i) for i in range(6)]
        futures = [p.submit(x) for x in good[:3]]
        poison = p.submit(torch.full((1, 3, SIZE, SIZE), 0.5))
        with pytest.raises(InputError):
            p.submit(torch.full((1, 3, SIZE, SIZE), float("nan")))
        futures += [p.submit(x) for x in good[3:]]
        for f, x in zip(futures, good):
            np.testing.assert_allclose(f.result(60), p.predict_unbatched(x), atol=1e-5)
        with pytest.raises(RuntimeError, match="kernel fault"):
            poison.result(60)
    with pytest.raises(RuntimeError, match="closed"):
        p.predict(good[0])


def test_torch_layers_give_the_same_answers(run_dir, predictor):
    x = _items(4, seed=9)
    with Predictor(run_dir, layers="torch", max_batch=4) as plain:
        assert plain.layers == "torch"
        assert not any(type(m).__module__.startswith("medkern.nn") for m in plain.network.modules())
        np.testing.assert_allclose(plain.predict(x), predictor.predict(x), atol=1e-4)


def test_predictor_refuses_what_it_cannot_serve(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.pt"):
        Predictor(tmp_path)
    with pytest.raises(TypeError, match="run folder"):
        Predictor(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="max_batch"):
        Predictor(tmp_path, max_batch=0)


# -- the HTTP server (skipped without the serve extra) -------------------------------------------------------
MAX_BODY_MB = 0.25


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(run_dir):
    """``medkern serve`` in a child process (exec'd, never forked from this one), stopped afterwards."""
    for module in ("fastapi", "uvicorn", "prometheus_client", "multipart", "httpx"):
        pytest.importorskip(module, reason="needs the serve extra (pip install 'medkern[serve]')")
    import httpx

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "medkern", "serve", str(run_dir), "--port", str(port),
                             "--max-batch", "8", "--max-wait-ms", "5", "--max-body-mb", str(MAX_BODY_MB)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=url, timeout=5) as client:
            while True:
                assert proc.poll() is None, proc.stdout.read()
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the server did not come up within 60 s"
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()


@pytest.fixture(scope="module")
def client(server):
    import httpx

    with httpx.Client(base_url=server, timeout=30) as c:
        yield c


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=arr.dtype == object)
    return buf.getvalue()


def _png(h=24, w=20, mode="RGB") -> bytes:
    from PIL import Image

    pixels = (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buf, "PNG")
    return buf.getvalue()


def test_health_reports_the_model(client):
    import medkern

    r = client.get("/health")
    assert r.status_code == 200
    want = {"status": "ok", "input_shape": [3, SIZE, SIZE], "classes": ["benign", "malignant"],
            "medkern_version": medkern.__version__}
    assert {k: r.json().get(k) for k in want} == want


def test_good_requests_json_npy_png(client, predictor):
    x = _items(3, seed=5).numpy()
    want = predictor.predict_unbatched(x)
    for kwargs in ({"json": {"inputs": x.tolist()}},
                   {"content": _npy(x), "headers": {"content-type": "application/octet-stream"}},
                   {"content": _npy(x.astype(np.float64)), "headers": {"content-type": "application/x-npy"}}):
        r = client.post("/predict", **kwargs)
        assert r.status_code == 200, r.text
        body = r.json()
        np.testing.assert_allclose(body["probabilities"], want, atol=1e-5)
        assert body["classes"] == ["benign", "malignant"] and len(body["labels"]) == 3
        assert set(body["labels"]) <= set(body["classes"])
    r = client.post("/predict", json={"inputs": x[0].tolist()})  # one item
    assert r.status_code == 200 and len(r.json()["probabilities"]) == 1

    from medkern.data.image_folder import _read_image

    png = _png()
    want = predictor.predict_unbatched(_read_image(io.BytesIO(png), SIZE, 3))
    for kwargs in ({"content": png, "headers": {"content-type": "image/png"}},
                   {"files": {"file": ("scan.png", png, "image/png")}}):
        r = client.post("/predict", **kwargs)
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["probabilities"], want, atol=1e-5)
    gray = client.post("/predict", content=_png(mode="L"), headers={"content-type": "image/png"})
    assert gray.status_code == 200, gray.text  # converted to the model's channels, as in training


def test_concurrent_clients_each_get_their_own_answers(client, server, predictor):
    import httpx

    xs = [_items(1, seed=100 + i).numpy() for i in range(24)]

    async def drive():
        async with httpx.AsyncClient(base_url=server, timeout=30) as ac:
            return await asyncio.gather(*(ac.post("/predict", json={"inputs": x.tolist()}) for x in xs))

    responses = asyncio.run(drive())
    for r, x in zip(responses, xs):
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["probabilities"], predictor.predict_unbatched(x), atol=1e-5)


BIG = int(MAX_BODY_MB * 1024 * 1024) + 1024


@pytest.mark.parametrize("kwargs,status,message", [
    ({"json": {"inputs": np.zeros((1, 1, SIZE, SIZE)).tolist()}}, 422, "1 channels; the model takes 3"),
    ({"json": {"inputs": np.zeros((2, 3, SIZE, SIZE, 1)).tolist()}}, 422, "shape (2, 3, 16, 16, 1)"),
    ({"json": {"inputs": np.zeros((3, 8, 8)).tolist()}}, 422, "8x8; the model takes 16x16"),
    ({"content": json.dumps({"inputs": np.full((3, SIZE, SIZE), 0.5).tolist()}).replace("0.5", "NaN", 1),
      "headers": {"content-type": "application/json"}}, 422, "NaN or infinite"),
    ({"content": json.dumps({"inputs": np.full((3, SIZE, SIZE), 0.5).tolist()}).replace("0.5", "Infinity", 1),
      "headers": {"content-type": "application/json"}}, 422, "NaN or infinite"),
    ({"json": {"inputs": [[["a", "b"]]]}}, 422, "strings"),
    ({"json": {"inputs": [[[1.0, 2.0], [3.0]]]}}, 422, "rectangular"),
    ({"json": {"pixels": [1, 2]}}, 422, '"inputs"'),
    ({"content": b'{"inputs": [1, 2', "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
    ({"content": _npy(np.zeros((3, SIZE, SIZE), np.complex64)), "headers": {"content-type": "application/x-npy"}},
     422, "dtype complex64"),
    ({"content": _npy(np.array([{"x": 1}], dtype=object)), "headers": {"content-type": "application/x-npy"}}, 422,
     "dtype object"),
    ({"content": b"\x93NUMPY\x01\x00garbage", "headers": {"content-type": "application/octet-stream"}}, 400, ".npy"),
    ({"content": b"\x89PNG\r\n\x1a\n not really", "headers": {"content-type": "image/png"}}, 400, "PNG/JPEG"),
    ({"content": _png()[:60], "headers": {"content-type": "image/png"}}, 400, "PNG/JPEG"),  # truncated
    ({"content": b"\xff\xd8\xff\xe0 broken jpeg", "headers": {"content-type": "image/jpeg"}}, 400, "PNG/JPEG"),
    ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "unsupported content type 'text/plain'"),
    ({"content": b"x" * BIG, "headers": {"content-type": "application/json"}}, 413, "over the limit"),
    ({"content": b"x" * BIG, "headers": {"content-type": "text/plain"}}, 415, "unsupported content type"),
])
def test_bad_requests_get_a_4xx_naming_the_problem(client, kwargs, status, message):
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    ok = client.post("/predict", json={"inputs": _items(1).tolist()})  # and the server keeps serving
    assert ok.status_code == 200, ok.text


def test_chunked_body_over_the_limit_is_refused(client):
    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(BIG // 65536 + 1):
            yield b" " * 65536

    r = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "over the limit" in r.json()["detail"]


def test_metrics_in_prometheus_text_format(client):
    client.post("/predict", json={"inputs": _items(2).tolist()})
    client.post("/predict", content=b"nope", headers={"content-type": "text/plain"})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    requests = {s.labels["status"]: s.value for s in families["medkern_predict_requests"].samples}
    assert requests["200"] >= 1 and requests["415"] >= 1
    errors = {s.labels["status"]: s.value for s in families["medkern_predict_errors"].samples}
    assert errors["415"] >= 1 and "200" not in errors
    assert {"medkern_predict_latency_seconds", "medkern_batch_size", "medkern_ready"} <= set(families)
    count = [s.value for s in families["medkern_batch_size"].samples if s.name == "medkern_batch_size_count"]
    assert count and count[0] >= 1


def test_serve_refuses_a_missing_run_folder(tmp_path, server):
    proc = subprocess.run([sys.executable, "-m", "medkern", "serve", str(tmp_path / "nope"), "--port",
                           str(_free_port())], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "model.pt" in proc.stderr
