"""Throughput and latency of `hftk serve` against the usual FastAPI endpoint that calls pipeline() per request.

Both servers run as child processes on loopback with the same model (an hftk SST-2 MiniLM folder), each in its
default arithmetic: the baseline's pipeline in fp32, hftk serve in `--precision` (default auto: bf16 on a CPU that
computes it; `--precision fp32` compares like with like). N clients (threads, each one
keep-alive connection) send one SST-2 dev sentence per request, back to back, for `--seconds` or `--requests`
per client, whichever ends first. Reported per server and N: requests/s, p50/p95/p99 latency, errors, the
server's peak RSS. Then overload: hftk serve with `--max-queue 64` under `--overload` clients: only 200 or 503
(with Retry-After) may come back, and the server's memory before and after. Then big bodies: `--big-bodies` bodies
of a million JSON numbers (2 MB, under the 4 MB limit) posted at once to hftk serve while one client polls
/health: /health's slowest answer meanwhile (goal: under 100 ms) and how long the bodies took to be refused.

    python bench/serve_load.py [--model DIR] [--clients 1,8,32,128] [--seconds 15] [--overload 256] [--big-bodies 4]
    python bench/serve_load.py --baseline-server MODEL PORT PRECISION   # (b) alone
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from statistics import quantiles
from typing import Any

from pydantic import BaseModel

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


class Body(BaseModel):
    """The baseline's request: FastAPI resolves it from the module (annotations are strings here)."""

    inputs: list[str]


def baseline_server(model: str, port: int, precision: str) -> None:
    """What a user writes first: FastAPI, pipeline() per request (sync endpoint: FastAPI's thread pool)."""
    import torch
    import uvicorn
    from fastapi import FastAPI
    from transformers import pipeline

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    pipe = pipeline("text-classification", model=model, device="cpu", dtype=dtype)
    app = FastAPI()

    @app.post("/predict")
    def predict(body: Body) -> dict[str, Any]:
        return {"predictions": pipe(body.inputs)}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for _ in range(1200):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server did not start: {' '.join(cmd)}\n{proc.stderr.read()[-2000:]}")


class Memory(threading.Thread):
    """Peak RSS of a process, polled every 0.1 s."""

    def __init__(self, pid: int) -> None:
        import psutil

        super().__init__(daemon=True)
        self.proc, self.peak, self.stop = psutil.Process(pid), 0, threading.Event()

    def now(self) -> int:
        return self.proc.memory_info().rss

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(0.1)


def load(port: int, sentences: list[str], clients: int, seconds: float, per_client: int) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for j in range(per_client):
            if time.monotonic() > end:
                break
            body = json.dumps({"inputs": [sentences[(k * per_client + j) % len(sentences)]]})
            started = time.perf_counter()
            try:
                conn.request("POST", "/predict", body, {"content-type": "application/json"})
                response = conn.getresponse()
                response.read()
                status = str(response.status)
                if response.status == 503 and response.getheader("retry-after") is None:
                    status = "503 without Retry-After"
            except OSError as e:
                status = type(e).__name__
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status == "200":
                    latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    cuts = quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0] if latencies else 0.0] * 99
    return {
        "clients": clients,
        "ok": statuses.get("200", 0),
        "throughput": statuses.get("200", 0) / wall,
        "p50_ms": 1000 * cuts[49],
        "p95_ms": 1000 * cuts[94],
        "p99_ms": 1000 * cuts[98],
        "statuses": statuses,
    }


def big_bodies(port: int, n: int) -> dict[str, Any]:
    """/health's latency while `n` bodies of a million numbers are posted at once."""
    body = b'{"inputs": [' + b",".join([b"0"] * 1_000_000) + b"]}"
    statuses: list[int] = []

    def post() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        conn.request("POST", "/predict", body, {"content-type": "application/json"})
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)

    threads = [threading.Thread(target=post) for _ in range(n)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    health: list[float] = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    while any(t.is_alive() for t in threads) or not health:
        t0 = time.perf_counter()
        conn.request("GET", "/health")
        conn.getresponse().read()
        health.append(time.perf_counter() - t0)
        time.sleep(0.01)
    for t in threads:
        t.join()
    return {
        "bodies": n,
        "statuses": sorted(statuses),
        "refused_within_s": time.perf_counter() - started,
        "health_calls": len(health),
        "health_max_ms": 1000 * max(health),
        "health_p50_ms": 1000 * sorted(health)[len(health) // 2],
    }


def run_server(name: str, cmd: list[str], port: int, sentences: list[str], args: Any) -> list[dict[str, Any]]:
    proc = start(cmd, port)
    rows = []
    try:
        load(port, sentences, 4, 3, 20)  # warm-up
        for n in args.clients:
            memory = Memory(proc.pid)
            memory.start()
            row = {"server": name, **load(port, sentences, n, args.seconds, args.requests), "peak_rss_gb": 0.0}
            memory.stop.set()
            memory.join()
            row["peak_rss_gb"] = memory.peak / 1024**3
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        proc.terminate()
        proc.wait(60)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="an hftk text-classification folder (default: train a tiny one)")
    ap.add_argument("--clients", default="1,8,32,128", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--seconds", type=float, default=15, help="per concurrency level and server")
    ap.add_argument("--requests", type=int, default=400, help="per client at most")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="hftk serve's")
    ap.add_argument("--overload", type=int, default=256, help="clients against --max-queue 64 (0 skips)")
    ap.add_argument("--big-bodies", type=int, default=4, help="2 MB bodies posted while /health is timed (0 skips)")
    ap.add_argument("--baseline-server", nargs=3, metavar=("MODEL", "PORT", "PRECISION"))
    args = ap.parse_args()
    if args.baseline_server:
        model, port, precision = args.baseline_server
        return baseline_server(model, int(port), precision)
    from predict_throughput import small_model

    model = args.model or str(small_model())
    sentences = [line.rsplit("\t", 1)[0] for line in (ROOT / "data/en/sst2/dev.tsv").read_text().splitlines()[1:]]
    py = sys.executable
    when = time.strftime("%Y-%m-%d %H:%M")
    print(f"# {when}, {os.cpu_count()} CPU cores, loopback; hftk serve --precision {args.precision}, baseline fp32")
    port = free_port()
    hftk = [py, "-m", "hftk", "serve", model, "--port", str(port), "--precision", args.precision]
    rows = run_server("hftk serve", hftk, port, sentences, args)
    if args.big_bodies:
        port = free_port()
        proc = start([*hftk[:-4], "--port", str(port), "--precision", args.precision], port)
        try:
            print(json.dumps({"server": "hftk serve", **big_bodies(port, args.big_bodies)}), flush=True)
        finally:
            proc.terminate()
            proc.wait(60)
    port = free_port()
    baseline = [py, str(Path(__file__).resolve()), "--baseline-server", model, str(port), "fp32"]
    rows += run_server("FastAPI + pipeline()", baseline, port, sentences, args)

    print("\n| server | clients | requests/s | p50 (ms) | p95 (ms) | p99 (ms) | failed | peak RSS (GB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        failed = sum(v for k, v in r["statuses"].items() if k != "200")
        cells = [r["server"], r["clients"], f"{r['throughput']:.1f}", f"{r['p50_ms']:.0f}", f"{r['p95_ms']:.0f}"]
        cells += [f"{r['p99_ms']:.0f}", failed, f"{r['peak_rss_gb']:.2f}"]
        print("| " + " | ".join(map(str, cells)) + " |")
    for n in args.clients:
        ours = next(r for r in rows if r["server"] == "hftk serve" and r["clients"] == n)
        base = next(r for r in rows if r["server"] != "hftk serve" and r["clients"] == n)
        print(
            f"{n} clients: throughput {ours['throughput'] / base['throughput']:.2f}x the baseline's; "
            f"hftk p99 {ours['p99_ms']:.0f} ms vs baseline p50 {base['p50_ms']:.0f} ms"
        )
    print("goals at 32 clients: >= 4x throughput, hftk p99 <= baseline p50; no failed requests below capacity")

    if args.overload:
        port = free_port()
        limits = ["--max-queue", "64", "--max-inputs", "16"]
        proc = start([*hftk[:-4], "--port", str(port), "--precision", args.precision, *limits], port)
        memory = Memory(proc.pid)
        before = memory.now()
        memory.start()
        result = load(port, sentences, args.overload, args.seconds, args.requests)
        memory.stop.set()
        memory.join()
        after = memory.now()
        proc.terminate()
        proc.wait(60)
        print(
            f"\noverload: {args.overload} clients against --max-queue 64: {result['statuses']} "
            f"(200: p99 {result['p99_ms']:.0f} ms); server RSS {before / 1024**3:.2f} GB before, peak "
            f"{memory.peak / 1024**3:.2f}, {after / 1024**3:.2f} after"
        )


if __name__ == "__main__":
    main()
