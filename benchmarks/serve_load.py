"""Load test of ``medkern serve``: latency percentiles and throughput under 1, 8, 32 and 128 concurrent
clients, for a model on medkern's layers and the same model on torch's, each served the same way.

    python benchmarks/serve_load.py                      # trains a tiny default ImageClassifier first
    python benchmarks/serve_load.py --run-dir runs/x --seconds 20
    python benchmarks/serve_load.py --soak 600           # then 10 minutes at 32 clients: errors, server RSS

The server runs in a child process on a free port of 127.0.0.1 (nothing else is ever contacted); the clients
are httpx async clients in this process, each sending one item per request (batch-1) and waiting for the
answer before sending the next. Every loop ends by time (``--seconds``) and by count (``--max-requests``).
The client shares the machine's cores with the server, so the figures are those of a co-located client."""
from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` (Linux /proc); NaN elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def train_default(out: Path) -> Path:
    """The project's default ImageClassifier (width 32, depth 3) on synthetic 28x28 lesion images, trained
    for one short epoch: the weights only need to exist, the served network is the default one."""
    cmd = [sys.executable, "-m", "medkern", "train", "classify", "--out", str(out), "--n-train", "256", "--n-test",
           "64", "--epochs", "1", "--n-boot", "10", "--quiet"]
    print(f"training the default ImageClassifier on synthetic 28x28 images -> {out}", flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=1800)
    return out


class Server:
    """``medkern serve`` in a child process, up once ``/health`` answers 200, stopped on exit."""

    def __init__(self, run_dir, layers: str, max_batch: int, max_wait_ms: float, threads: int | None,
                 log: Path):
        self.port = _free_port()
        self.url = f"http://{HOST}:{self.port}"
        env = dict(os.environ)
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        self.log = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "medkern", "serve", str(run_dir), "--host", HOST, "--port", str(self.port),
             "--layers", layers, "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 120.0) -> dict:
        import httpx

        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the server exited with {self.proc.returncode}; see {self.log.name}")
                try:
                    r = client.get("/health")
                    if r.status_code == 200:
                        return r.json()
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise TimeoutError(f"the server was not ready within {timeout} s; see {self.log.name}")

    def rss_mib(self) -> float:
        return _rss_mib(self.proc.pid)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _bodies(shape, fmt: str, n: int = 16, seed: int = 0) -> list[tuple[bytes, str]]:
    """A few ready-made batch-1 request bodies (made once, so the client spends its time on HTTP)."""
    import json

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.random(shape, dtype=np.float32)
        if fmt == "json":
            out.append((json.dumps({"inputs": x.round(4).tolist()}).encode(), "application/json"))
        else:
            buf = io.BytesIO()
            np.save(buf, x)
            out.append((buf.getvalue(), "application/x-npy"))
    return out


async def drive(url: str, clients: int, seconds: float, bodies, max_requests: int, warmup_s: float = 1.0,
                on_tick=None, tick_s: float = 10.0) -> dict:
    """``clients`` concurrent clients, each posting one body after another for ``warmup_s`` (not counted)
    plus ``seconds``; returns the latencies (s) and error counts of the counted part."""
    import httpx

    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    latencies, errors, statuses = [], 0, {}
    start = time.perf_counter()
    counted_from, stop_at = start + warmup_s, start + warmup_s + seconds
    per_client = max(1, max_requests // clients)

    async def client(k: int, ac) -> None:
        nonlocal errors
        for i in range(per_client):
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            body, ctype = bodies[(k + i) % len(bodies)]
            try:
                r = await ac.post("/predict", content=body, headers={"content-type": ctype})
                ok = r.status_code == 200
                if not ok:
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            except httpx.HTTPError as e:
                ok = False
                statuses[type(e).__name__] = statuses.get(type(e).__name__, 0) + 1
            t1 = time.perf_counter()
            if t0 >= counted_from:
                if ok:
                    latencies.append(t1 - t0)
                else:
                    errors += 1

    async def ticker() -> None:  # at the end of the warm-up, then every tick_s
        if on_tick is None:
            return
        await asyncio.sleep(max(0.0, counted_from - time.perf_counter()))
        while True:
            on_tick(time.perf_counter() - counted_from)
            left = stop_at - time.perf_counter()
            if left <= 0:
                return
            await asyncio.sleep(min(tick_s, left))

    # One client (one keep-alive connection) per simulated user: a shared pool costs the client CPU that
    # grows with the number of connections, which would be measured as server latency.
    acs = [httpx.AsyncClient(base_url=url, limits=limits, timeout=30, trust_env=False) for _ in range(clients)]
    try:
        tasks = [asyncio.create_task(client(k, ac)) for k, ac in enumerate(acs)]
        tick = asyncio.create_task(ticker())
        await asyncio.gather(*tasks)
        tick.cancel()
    finally:
        for ac in acs:
            await ac.aclose()
    elapsed = min(time.perf_counter(), stop_at) - counted_from
    lat = np.asarray(latencies) * 1e3
    return {"clients": clients, "requests": len(latencies), "errors": errors, "statuses": statuses,
            "throughput": len(latencies) / max(elapsed, 1e-9),
            **{f"p{q}": float(np.percentile(lat, q)) if len(lat) else float("nan") for q in (50, 95, 99)}}


def _row(layers: str, r: dict) -> str:
    return (f"{layers:<8} {r['clients']:>7} {r['requests']:>9} {r['errors']:>6} {r['throughput']:>11.1f} "
            f"{r['p50']:>8.2f} {r['p95']:>8.2f} {r['p99']:>8.2f}")


HEADER = f"{'layers':<8} {'clients':>7} {'requests':>9} {'errors':>6} {'req/s':>11} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"


def _targets(results: dict) -> list[str]:
    lines = []
    for layers, rows in results.items():
        by = {r["clients"]: r for r in rows}
        if 1 in by and 32 in by:
            gain = by[32]["throughput"] / by[1]["throughput"]
            p99 = by[32]["p99"] / by[1]["p50"]
            lines.append(f"{layers}: throughput at 32 clients = {gain:.1f}x single-client (target >= 4x: "
                         f"{'met' if gain >= 4 else 'missed'}); p99 at 32 clients = {p99:.1f}x single-client p50 "
                         f"(target <= 3x: {'met' if p99 <= 3 else 'missed'})")
    if {"medkern", "torch"} <= set(results):
        torch_by = {r["clients"]: r for r in results["torch"]}
        for r in results["medkern"]:
            t = torch_by.get(r["clients"])
            if t is not None:
                lines.append(f"{r['clients']:>3} clients: p99 medkern {r['p99']:.2f} ms vs torch {t['p99']:.2f} ms "
                             f"({'met' if r['p99'] < t['p99'] else 'missed'}: medkern below torch)")
    return lines


def soak(server: Server, clients: int, seconds: float, bodies, max_requests: int, warmup_s: float) -> dict:
    """``clients`` clients for ``warmup_s`` + ``seconds``: errors, and the server's RSS after the warm-up
    against its RSS every 10 s after."""
    samples = []

    def tick(t):
        samples.append((t, server.rss_mib()))
        print(f"  soak t={t:6.0f} s  server RSS {samples[-1][1]:8.1f} MiB", flush=True)

    rss_ready = server.rss_mib()
    result = asyncio.run(drive(server.url, clients, seconds, bodies, max_requests, warmup_s=warmup_s, on_tick=tick))
    rss_end = server.rss_mib()
    base = samples[0][1] if samples else rss_end
    return {**result, "rss_ready": rss_ready, "rss_after_warmup": base, "rss_end": rss_end,
            "rss_max": max([rss_end] + [s for _, s in samples]), "growth": rss_end - base}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", help="a run folder to serve (default: train the default ImageClassifier)")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per concurrency")
    p.add_argument("--concurrency", default="1,8,32,128", help="comma-separated client counts")
    p.add_argument("--layers", default="medkern,torch", help="comma-separated: medkern, torch")
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--max-wait-ms", type=float, default=2.0)
    p.add_argument("--body", default="json", choices=["json", "npy"], help="request body format")
    p.add_argument("--server-threads", type=int, default=None, help="OMP_NUM_THREADS of the server")
    p.add_argument("--max-requests", type=int, default=2_000_000, help="cap on requests per measurement")
    p.add_argument("--soak", type=float, default=0.0, help="then this many seconds at --soak-clients (medkern)")
    p.add_argument("--soak-clients", type=int, default=32)
    p.add_argument("--soak-warmup", type=float, default=20.0, help="seconds of load before the RSS baseline")
    args = p.parse_args(argv)
    concurrency = [int(c) for c in args.concurrency.split(",")]
    layer_kinds = [s.strip() for s in args.layers.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="medkern-serve-load-") as tmp:
        run_dir = Path(args.run_dir) if args.run_dir else train_default(Path(tmp) / "run")
        results = {}
        for layers in layer_kinds:
            with Server(run_dir, layers, args.max_batch, args.max_wait_ms, args.server_threads,
                        Path(tmp) / f"server-{layers}.log") as server:
                health = server.wait_ready()
                shape = tuple(health["input_shape"])
                bodies = _bodies(shape, args.body)
                if not results:
                    print(f"model {health['model']}, items {shape}, max batch {args.max_batch}, max wait "
                          f"{args.max_wait_ms} ms, {args.body} bodies, {args.seconds:g} s per concurrency, "
                          f"{os.cpu_count()} CPUs shared by server and clients\n{HEADER}", flush=True)
                rows = []
                for c in concurrency:
                    r = asyncio.run(drive(server.url, c, args.seconds, bodies, args.max_requests))
                    rows.append(r)
                    print(_row(layers, r) + (f"  {r['statuses']}" if r["statuses"] else ""), flush=True)
                results[layers] = rows
        print()
        for line in _targets(results):
            print(line)
        if args.soak > 0:
            layers = layer_kinds[0]
            print(f"\nsoak: {args.soak:g} s at {args.soak_clients} clients ({layers} layers), after "
                  f"{args.soak_warmup:g} s of warm-up load", flush=True)
            with Server(run_dir, layers, args.max_batch, args.max_wait_ms, args.server_threads,
                        Path(tmp) / "server-soak.log") as server:
                health = server.wait_ready()
                s = soak(server, args.soak_clients, args.soak, _bodies(tuple(health["input_shape"]), args.body),
                         args.max_requests * 100, args.soak_warmup)
            print(HEADER + "\n" + _row(layers, s) + (f"  {s['statuses']}" if s["statuses"] else ""))
            print(f"soak: {s['errors']} errors in {s['requests'] + s['errors']} requests; server RSS "
                  f"{s['rss_ready']:.1f} MiB when ready, {s['rss_after_warmup']:.1f} MiB after warm-up, "
                  f"{s['rss_end']:.1f} MiB at the end (max {s['rss_max']:.1f}): growth {s['growth']:+.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
