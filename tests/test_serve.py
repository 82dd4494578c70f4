"""`hftk serve` (hftk/serve.py): a real uvicorn server on a loopback port, called over HTTP.

The same answers as `hftk predict`, requests batched together, every bad request a 4xx JSON error while the
server goes on, overload a quick 503 (never a hang), and SIGTERM finishing what is in flight before exit 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from hftk import Predictor
from hftk.serve import Limits, build_app

from .helpers import DATA, MINILM, ROOT, cli

SENTENCES = [line.rsplit("\t", 1)[0] for line in (DATA / "en/sst2/dev.tsv").read_text().splitlines()[1:81]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(predictor: Predictor, **limits):
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(predictor, Limits(**limits)), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def call(url: str, body: object = None, *, raw: bytes | None = None, timeout: float = 60) -> tuple[int, dict, dict]:
    """(status, JSON answer, headers) of a GET (no body) or a POST."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read()), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), {k.lower(): v for k, v in e.headers.items()}


@pytest.fixture(scope="module")
def sst2(sst2_model) -> Predictor:
    return Predictor(sst2_model)


def test_answers_are_hftk_predicts_for_each_task(sst2_model, sst2, tmp_path):
    inputs = tmp_path / "in.txt"
    inputs.write_text("\n".join(SENTENCES[:20]) + "\n", encoding="utf-8")
    cli("predict", sst2_model, "--input", inputs, "--output", tmp_path / "out.jsonl", "--top-k", 2)
    expected = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    expected = [{k: v for k, v in row.items() if k not in ("line", "sentence")} for row in expected]
    with serving(sst2) as url:
        status, answer, _ = call(f"{url}/predict", {"inputs": SENTENCES[:20], "options": {"top_k": 2}})
        assert status == 200 and answer["predictions"] == expected
        status, meta, _ = call(f"{url}/metadata")
        assert meta["task"] == "text-classification" and meta["labels"] == ["negative", "positive"]
        assert meta["inputs"] == ["sentence"] and meta["precision"] in ("bf16", "fp32")
        assert call(f"{url}/health")[1]["status"] == "ok"
    # A checkpoint not trained by hftk, with --task: sentence embeddings from the packaged MiniLM.
    texts = ["a sentence to embed", "another one"]
    predictor = Predictor(MINILM, task="feature-extraction")
    with serving(predictor) as url:
        status, answer, _ = call(f"{url}/predict", {"inputs": texts})
    assert status == 200 and answer["predictions"] == json.loads(json.dumps(predictor.predict(texts)))


def test_requests_that_arrive_together_are_predicted_together(sst2, monkeypatch):
    calls: list[int] = []
    predict = Predictor.predict

    def counted(self, inputs, **options):
        calls.append(len(inputs))
        return predict(self, inputs, **options)

    monkeypatch.setattr(Predictor, "predict", counted)
    alone = {s: predict(sst2, [s])[0]["label"] for s in SENTENCES[:32]}
    with serving(sst2, max_wait_ms=200) as url, ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda s: call(f"{url}/predict", {"inputs": [s]}), SENTENCES[:32]))
    assert all(status == 200 for status, _, _ in answers)
    assert [a["predictions"][0]["label"] for _, a, _ in answers] == [alone[s] for s in SENTENCES[:32]]
    assert sum(calls) == 32 and len(calls) < 8, calls  # 32 requests, a few model calls


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b'{"inputs": [', 400, "malformed JSON"),
        (b'["a film"]', 422, "body:"),
        (b'{"inputs": []}', 422, "inputs: List should have at least 1 item"),
        (b'{"inputs": "a film"}', 422, "inputs: Input should be a valid list"),
        (b'{"inputs": [3]}', 422, "inputs.0: must be text, or an object with the keys sentence"),
        (b'{"inputs": ["fine", "  "]}', 422, "inputs.1: empty; send text"),
        (b'{"inputs": [{"text": "x"}]}', 422, "inputs.0: needs the text key(s) sentence"),
        (b'{"inputs": ["x"], "extra": 1}', 422, "extra: Extra inputs are not permitted"),
        (b'{"inputs": ["x"], "options": {"beams": 2}}', 422, "options: beams: text-classification predictions"),
        (json.dumps({"inputs": ["x" * 501]}).encode(), 422, "inputs.0: 501 characters, more than this server's 500"),
        (json.dumps({"inputs": ["x"] * 9}).encode(), 413, "inputs: 9 in one request, more than this server's 8"),
        (json.dumps({"inputs": ["word " * 500]}).encode(), 413, "request body over 2000 bytes"),
    ],
)
def test_a_bad_request_is_a_4xx_json_error_and_the_server_goes_on(sst2, body, status, needle):
    with serving(sst2, max_input_chars=500, max_inputs=8, max_body_bytes=2000) as url:
        got, answer, _ = call(f"{url}/predict", raw=body)
        assert got == status and needle in answer["error"], answer
        assert call(f"{url}/predict", {"inputs": ["a fine film"]})[0] == 200


def test_overload_is_a_quick_503_never_a_wait(sst2):
    """Room for 16 waiting inputs: of 24 requests of 16 at once most are refused at once, with Retry-After; the
    rest are answered in full. Nothing waits past its request's timeout."""
    with serving(sst2, max_queue=16, max_inputs=16, max_wait_ms=1) as url, ThreadPoolExecutor(24) as pool:
        started = time.monotonic()
        answers = list(pool.map(lambda _: call(f"{url}/predict", {"inputs": SENTENCES[:16]}, timeout=60), range(24)))
        elapsed = time.monotonic() - started
        assert call(f"{url}/health")[1]["waiting"] == 0
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {200, 503} and statuses.count(503) >= 12, statuses
    assert all(h.get("retry-after") == "1" for s, _, h in answers if s == 503)
    assert all(len(a["predictions"]) == 16 for s, a, _ in answers if s == 200)
    assert elapsed < 60


def test_sigterm_finishes_what_is_in_flight_and_exits_0(sst2_model):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "hftk", "serve", str(sst2_model), "--port", str(port), "--max-wait-ms", "100"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            with contextlib.suppress(OSError):
                if call(f"{url}/health", timeout=1)[0] == 200:
                    break
            time.sleep(0.1)
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(call, f"{url}/predict", {"inputs": SENTENCES * 3})  # 240 inputs: a while
            time.sleep(0.05)  # the request is in (the batcher waits up to 100 ms for company)
            proc.send_signal(signal.SIGTERM)
            status, answer, _ = pending.result(timeout=120)
        assert status == 200 and len(answer["predictions"]) == 240
        assert proc.wait(timeout=60) == 0, proc.stderr.read()[-2000:]
        with pytest.raises(OSError):  # no longer accepting
            call(f"{url}/health", timeout=2)
    finally:
        proc.kill()
        proc.wait()
    assert "Traceback" not in proc.stderr.read()


def test_serve_binds_to_loopback_unless_told(monkeypatch):
    import uvicorn

    from hftk.cli import main

    seen = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: seen.update(host=self.config.host, port=self.config.port))
    assert main(["serve", MINILM, "--task", "feature-extraction"]) == 0
    assert seen == {"host": "127.0.0.1", "port": 8000}
