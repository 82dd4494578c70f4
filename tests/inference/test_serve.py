"""`hftk serve` (hftk/inference/serve.py): a real uvicorn server on a loopback port, called over HTTP.

The same answers as `hftk predict`, requests batched together (and a request alone never waiting), every bad
request a 4xx JSON error naming its field while the server goes on, every dimension of a request bounded, big
bodies never holding up /health, slow clients cut off, an optional API key, overload a quick 503 (never a hang),
and SIGTERM finishing what is in flight before exit 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
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

from hftk import HftkError, Predictor, train
from hftk.inference.requests import Limits
from hftk.inference.serve import build_app, server_config

from ..helpers import DATA, MINILM, ROOT, cli, head, served_task

SENTENCES = [line.rsplit("\t", 1)[0] for line in (DATA / "en/sst2/dev.tsv").read_text().splitlines()[1:81]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(predictor: Predictor, api_key: str | None = None, **limits):
    """The app on uvicorn with `hftk serve`'s own configuration (server_config), on a free loopback port."""
    import uvicorn

    port = free_port()
    app = build_app(predictor, Limits(**limits), api_key=api_key)
    server = uvicorn.Server(server_config(app, port=port, limits=Limits(**limits)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def call(
    url: str,
    body: object = None,
    *,
    raw: bytes | None = None,
    timeout: float = 60,
    method: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict, dict]:
    """(status, JSON answer, headers) of a GET (no body) or a POST; every answer, errors too, must be JSON."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"content-type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
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


def test_one_input_alone_is_answered_alone_as_the_hf_inference_api_does(sst2, mc):
    """{"inputs": "text"} (the HF Inference API's body for one input) is answered with that input's prediction,
    not a list of one, as that API answers it; an object alone (a question and its choices) is one input too."""
    text = SENTENCES[0]
    with serving(sst2) as url:
        status, answer, _ = call(f"{url}/predict", {"inputs": text, "options": {"top_k": 2}})
        assert status == 200 and answer == {"prediction": sst2.predict([text], top_k=2)[0]}
        assert call(f"{url}/predict", {"inputs": [text]})[1] == {"predictions": sst2.predict([text])}
        status, answer, _ = call(f"{url}/predict", {"inputs": {"sentence": text}})
        assert status == 200 and answer == {"prediction": sst2.predict([text])[0]}
    row = json.loads((MC / "dev.jsonl").read_text().splitlines()[0])
    row = {"question": row["question"], "choices": row["choices"]}
    with serving(mc) as url:
        status, answer, _ = call(f"{url}/predict", {"inputs": row})
        assert status == 200 and answer == {"prediction": json.loads(json.dumps(mc.predict([row])[0]))}
        status, answer, _ = call(f"{url}/predict", {"inputs": {**row, "choices": ["one"]}})
        assert status == 422 and answer["error"].startswith("inputs.choices: 1 choices; send 2 to 16"), answer


def test_each_request_has_an_access_log_line_and_the_server_says_when_it_stops(sst2, caplog):
    with serving(sst2) as url:
        call(f"{url}/predict", {"inputs": SENTENCES[:3]})
        call(f"{url}/predict", {"inputs": "a fine film"})
        call(f"{url}/predict", {"input": ["x"]})
        call(f"{url}/health")
    lines = [r.getMessage() for r in caplog.records if r.name == "hftk"]
    assert [re.sub(r"\d+\.\d ms$", "MS", line) for line in lines] == [
        "hftk: POST /predict 200 3 inputs MS",
        "hftk: POST /predict 200 1 inputs MS",
        "hftk: POST /predict 422 - inputs MS",
        "hftk: GET /health 200 - inputs MS",
        "hftk: stopped serving after 4 requests (4 inputs)",
    ]


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
        (b'{"inputs": [', 400, "malformed JSON: Expecting value: line 1 column 13"),
        (b'{"inputs": ["\xff"]}', 400, "malformed JSON: not UTF-8 (byte 14 of the body)"),
        (b'["a film"]', 422, "body: must be an object"),
        (b'{"inputs": []}', 422, "inputs: must be an input or a list of one or more inputs"),
        (b'{"inputs": 3}', 422, "inputs: must be an input or a list of one or more inputs"),
        (b'{"inputs": "  "}', 422, "inputs: empty; send text"),  # one input alone: named without an index
        (b'{"options": {}}', 422, 'inputs: missing; send {"inputs": ["text", ...]} or {"inputs": "text"}'),
        (b'{"input": ["x"]}', 422, "\"input\": not a field of the request (did you mean 'inputs'?) (its fields"),
        (b'{"inputs": [3]}', 422, "inputs.0: must be text, or an object with the keys sentence, text_pair"),
        (b'{"inputs": ["fine", "  "]}', 422, "inputs.1: empty; send text"),
        (b'{"inputs": [{"text": "x"}]}', 422, 'inputs.0: the key "text" is not an input of this model'),
        (b'{"inputs": [{"text_pair": "x"}]}', 422, "inputs.0: needs the text key(s) sentence"),
        (b'{"inputs": [{"sentence": 3}]}', 422, "inputs.0.sentence: must be text, got a number"),
        (b'{"inputs": [{"sentence": "x", "text_pair": "y"}, "z"]}', 422, "inputs.1: has the keys sentence but"),
        (b'{"inputs": ["x"], "extra": 1}', 422, '"extra": not a field of the request'),
        (b'{"inputs": ["x"], "options": {"beams": 2}}', 422, "options.beams: text-classification predictions"),
        (b'{"inputs": ["x"], "options": [2]}', 422, "options: must be an object"),
        # Lone surrogates are JSON but not Unicode text: the tokenizer and the answer's UTF-8 would fail on them.
        (b'{"inputs": ["fine \\ud800"]}', 422, "inputs.0: not valid Unicode (a lone surrogate \\ud800 at character 6)"),
        (b'{"inputs": [{"sentence": "x", "text_pair": "\\udfff"}]}', 422, "inputs.0.text_pair: not valid Unicode"),
        (b'{"inputs": [{"sentence": "x", "\\ud800": "y"}]}', 422, 'the key "\\ud800" is not an input'),
        (json.dumps({"inputs": ["x" * 501]}).encode(), 422, "inputs.0: 501 characters, more than this server's 500"),
        (json.dumps({"inputs": ["x"] * 9}).encode(), 413, "inputs: 9 in one request, more than this server's 8"),
        (json.dumps({"inputs": [{"sentence": "x" * 300, "text_pair": "y" * 201}]}).encode(), 422, "501 characters"),
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


# ------------------------------------------------------------------------------------- options (item 5)


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"top_k": -1}, "options.top_k: must be 1 or more, got -1"),  # was a Python slice: 200 with 1 of 2 labels
        ({"top_k": 0}, "options.top_k: must be 1 or more, got 0"),
        ({"top_k": "2"}, 'options.top_k: must be a whole number, got "2"'),
        ({"top_k": 1.5}, "options.top_k: must be a whole number, got 1.5"),
        ({"top_k": float("nan")}, "options.top_k: must be a whole number, got NaN"),
        ({"top_k": True}, "options.top_k: must be a whole number, got true"),
        ({"top_k": [2]}, "options.top_k: must be a whole number, got [2]"),
        (
            {"aggregation_strategy": "simple"},
            "options.aggregation_strategy: text-classification predictions do not take it "
            "(their options: top_k, windows)",
        ),
    ],
)
def test_options_follow_the_rules_of_the_command_lines_flags(sst2, options, needle):
    """The server and `hftk predict` check options with one function (predict.check_options): the same values
    are refused by the library, and the CLI's own message for --top-k 0 is the flag's."""
    with serving(sst2) as url:
        status, answer, _ = call(
            f"{url}/predict", raw=json.dumps({"inputs": ["a fine film"], "options": options}).encode()
        )
        assert status == 422 and answer["error"] == needle, answer
        status, answer, _ = call(f"{url}/predict", {"inputs": ["a fine film"], "options": {"top_k": None}})
        assert status == 200 and "top_k" not in answer["predictions"][0]  # null: the default, as an absent flag
    with pytest.raises(HftkError, match=re.escape(needle.split(": ", 1)[1].split(",")[0][:30])):
        sst2.predict(["a fine film"], **options)


def test_every_tasks_options_have_their_flags_rules(tok):
    """One check for every task's options, named as flags for the CLI and as JSON keys for the server."""
    from hftk.inference.predict import check_options

    ner, fill, qa = (served_task(tok, name) for name in ("token-classification", "masked-lm", "question-answering"))
    with pytest.raises(HftkError, match=r"^--aggregation loud: must be one of none, simple, first, average, max$"):
        check_options(ner, {"aggregation_strategy": "loud"})
    with pytest.raises(HftkError, match=r'^aggregation_strategy: must be one of .*, got "loud"$'):
        check_options(ner, {"aggregation_strategy": "loud"}, flags=False)
    with pytest.raises(HftkError, match=r"^--top-k 51: must be 50 or fewer$"):  # fill-mask keeps 50 per mask
        check_options(fill, {"top_k": 51})
    with pytest.raises(HftkError, match=r"^max_answer_length: must be a whole number, got 2.5$"):
        check_options(qa, {"max_answer_length": 2.5}, flags=False)
    with pytest.raises(HftkError, match=r"^--top-k 0: must be 1 or more$"):
        check_options(None, {"top_k": 0})  # `hftk predict` checks values before any model loads
    check_options(qa, {"top_k": 3, "max_answer_length": 30}, flags=False)


# ------------------------------------------------------------------- every dimension bounded (items 9, 13)

MC = DATA / "en/paraphrase_mc"


@pytest.fixture(scope="module")
def mc(tmp_path_factory) -> Predictor:
    """A multiple-choice MiniLM after two steps on real rows: enough to serve (its answers need not be good)."""
    tmp = tmp_path_factory.mktemp("mc")
    rows = {
        split: str(head(MC / f"{split}.jsonl", tmp / f"{split}.jsonl", 8, header=False)) for split in ("train", "dev")
    }
    overrides = {"data.train": rows["train"], "data.validation": rows["dev"], "max_length": 32}
    overrides |= {"training.max_steps": 2, "training.per_device_train_batch_size": 4, "training.eval_strategy": "no"}
    overrides |= {"training.save_strategy": "no", "training.load_best_model_at_end": False}
    return Predictor(
        train(ROOT / "recipes/paraphrase-mc-minilm.yaml", overrides=overrides, output_dir=tmp / "m").output_dir
    )


def test_multiple_choice_requests_are_bounded_in_every_dimension(mc):
    row = json.loads((MC / "dev.jsonl").read_text().splitlines()[0])
    good = {"question": row["question"], "choices": row["choices"]}
    three = {"question": row["question"], "choices": row["choices"][:3]}

    def one(**change):
        return {"inputs": [{**good, **change}]}

    cases = [
        (one(choices=["a choice"] * 20_000), 413, "inputs.0.choices: 20000 choices; send 2 to 16"),  # was 47 s
        (
            one(choices=["x" * 1_900_000] * 2),
            422,
            f"inputs.0: {3_800_000 + len(row['question'])} characters, more than this server's 20000",
        ),
        (one(choices=["only one"]), 422, "inputs.0.choices: 1 choices; send 2 to 16"),
        (one(choices="a|b"), 422, "inputs.0.choices: must be a list of texts, got str"),
        (one(choices=["a", 2]), 422, "inputs.0.choices.1: must be text, got a number"),
        (one(choices=["a", " "]), 422, "inputs.0.choices.1: empty; send text"),
        (one(choices=["a", "b\ud800"]), 422, "inputs.0.choices.1: not valid Unicode (a lone surrogate \\ud800"),
        (one(question="q" * 19_990), 422, "characters, more than this server's 20000"),
        ({"inputs": [good, three]}, 422, "inputs.1.choices: 3 choices but inputs.0 has 4; send the same number"),
        ({"inputs": ["a question alone"]}, 422, "inputs.0: this model takes objects with the keys question, choices"),
        ({"inputs": [{"choices": ["a", "b"]}]}, 422, "inputs.0: needs the text key(s) question"),
    ]
    with serving(mc) as url:
        for body, status, needle in cases:
            got, answer, _ = call(f"{url}/predict", raw=json.dumps(body).encode())
            assert got == status and needle in answer["error"], (needle, answer)
        # Requests of four and of three choices at once: each is answered as alone (they never share a call).
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda b: call(f"{url}/predict", {"inputs": [b]}), [good, three] * 4))
    assert [a["predictions"] for _, a, _ in answers] == [mc.predict([good]), mc.predict([three])] * 4


# ------------------------------------------------------------------------------- big bodies (item 8)


def test_big_bodies_never_hold_up_health(sst2):
    """Bodies of millions of JSON values under the body limit (one took the event loop for 30 s): each is refused
    while /health goes on answering. Not a timing test: /health has 10 s, where the old server needed ~30."""
    n = 1_000_000
    bodies = [
        b'{"inputs": [' + b",".join([b"0"] * n) + b"]}",  # 2 MB of numbers
        b'{"inputs": [' + b",".join([b"[]"] * (n // 2)) + b"]}",
        b'{"inputs": ["a"], "options": {"top_k": [' + b",".join([b"{}"] * (n // 2)) + b"]}}",
        b'{"inputs": [' + b",".join([b'""'] * n) + b"]}",  # strings: parsed (cheap, in steps), then counted
    ]
    with serving(sst2) as url, ThreadPoolExecutor(len(bodies)) as pool:
        pending = [pool.submit(call, f"{url}/predict", raw=body) for body in bodies]
        health = []
        while not all(p.done() for p in pending) or not health:
            health.append(call(f"{url}/health", timeout=10)[0])
        answers = [p.result() for p in pending]
    assert set(health) == {200}
    assert [status for status, _, _ in answers] == [413] * 4, answers
    assert "holds more than 784 numbers, objects and lists" in answers[0][1]["error"]
    assert "inputs: 1000000 in one request, more than this server's 256" in answers[3][1]["error"]


# -------------------------------------------------------- slow clients, errors, keys, binding (item 10)


def test_slow_clients_are_cut_off(sst2):
    """Headers never finished (300 such connections were held for good) close after --request-timeout, on a new
    connection or after an answer; a body that stops coming is a 408."""
    with serving(sst2, request_timeout=1) as url:
        port = int(url.rsplit(":", 1)[1])
        half = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        for s in half:
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        reused = socket.create_connection(("127.0.0.1", port))
        reused.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        reused.settimeout(30)
        assert _read_response(reused)[0] == 200
        reused.sendall(b"GET /health HTTP/1.1\r\nHo")
        for s in [*half, reused]:
            s.settimeout(30)  # closed by the server long before this
            assert s.recv(4096) == b""
            s.close()
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99\r\n\r\n{"
            )
            s.settimeout(30)
            status, _, body = _read_response(s)
        assert status == 408 and "request body not complete within 1 s" in json.loads(body)["error"]
        assert call(f"{url}/health")[0] == 200


def _read_response(s: socket.socket) -> tuple[int, bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    headers, body = data.split(b"\r\n\r\n", 1)
    return int(headers.split()[1]), headers, body


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return int(value)
    return 0


def test_every_error_is_json(sst2, monkeypatch):
    """405, 404, malformed HTTP, a chunked body over the limit (was 400) and a fault of the server's (500)."""
    with serving(sst2, max_body_bytes=100_000) as url:
        assert call(f"{url}/predict", method="GET")[:2] == (
            405,
            {"error": "GET /predict: method not allowed; POST /predict, GET /health, GET /metadata, GET /docs"},
        )
        assert call(f"{url}/nowhere")[0] == 404 and "GET /nowhere: not found" in call(f"{url}/nowhere")[1]["error"]
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as s:
            s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            s.settimeout(30)
            status, headers, body = _read_response(s)
        assert status == 400 and b"application/json" in headers
        assert json.loads(body)["error"].startswith("malformed HTTP request")
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=60)
        chunks = (b"x" * 65536 for _ in range(800))  # 50 MB, chunked (no Content-Length)
        conn.request("POST", "/predict", body=chunks, headers={"content-type": "application/json"}, encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 413 and "request body over 100000 bytes" in json.loads(response.read())["error"]
        conn.close()

        def broken(self, inputs, **options):
            raise RuntimeError("a fault of the server's")

        monkeypatch.setattr(Predictor, "predict", broken)
        status, answer, _ = call(f"{url}/predict", {"inputs": ["a fine film"]})
        assert status == 500 and answer == {"error": "the server failed (RuntimeError); its log says more"}


def test_an_api_key_guards_every_path_but_health(sst2):
    with serving(sst2, api_key="k-123") as url:
        body = {"inputs": ["a fine film"]}
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "k-123"}):
            status, answer, got = call(f"{url}/predict", body, headers=headers)
            assert status == 401 and got["www-authenticate"] == "Bearer" and "API key" in answer["error"]
        assert call(f"{url}/metadata")[0] == 401
        assert call(f"{url}/predict", body, headers={"authorization": "Bearer k-123"})[0] == 200
        assert call(f"{url}/health")[0] == 200  # probes carry no key


def test_serve_warns_once_when_it_is_reachable_from_other_machines(monkeypatch, caplog):
    import uvicorn

    from hftk.cli import main

    monkeypatch.setattr(uvicorn.Server, "run", lambda self: None)
    monkeypatch.delenv("HFTK_API_KEY", raising=False)
    assert main(["serve", MINILM, "--task", "feature-extraction", "--host", "0.0.0.0"]) == 0
    warnings = [r.getMessage() for r in caplog.records if "warning" in r.getMessage()]
    assert warnings == [
        "hftk: warning: --host 0.0.0.0 is not a loopback address: other machines can reach this server; anyone "
        "who reaches it may use it (set HFTK_API_KEY to ask for a key)"
    ]
    caplog.clear()
    monkeypatch.setenv("HFTK_API_KEY", "k-123")
    assert main(["serve", MINILM, "--task", "feature-extraction", "--host", "::1"]) == 0
    assert not [r for r in caplog.records if "warning" in r.getMessage()]
    monkeypatch.setenv("HFTK_API_KEY", "")
    assert main(["serve", MINILM, "--task", "feature-extraction"]) == 2  # set but empty: refused, never open


# ----------------------------------------------------------------------------- no wait when alone


def test_a_request_alone_never_waits_for_company(sst2):
    """With a minute to wait for company, a request alone is answered at once, and requests that came together
    go as soon as all of them are in: the batcher waits only while others are in the server."""
    with serving(sst2, max_wait_ms=60_000) as url:
        assert call(f"{url}/predict", {"inputs": [SENTENCES[0]]}, timeout=30)[0] == 200
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda s: call(f"{url}/predict", {"inputs": [s]}, timeout=30), SENTENCES[:8]))
    assert [status for status, _, _ in answers] == [200] * 8


# -- instruction-tuned text generation: prompts, chats, streaming -------------------------------------------------
def dolly(n: int) -> list[dict]:
    """Dolly rows short enough for the fixture's 128 tokens."""
    rows = [json.loads(line) for line in (DATA / "en/dolly/train.jsonl").read_text().splitlines()[:300]]
    return [r for r in rows if len(r["instruction"] + r["context"] + r["response"]) < 300][:n]


def chat(row: dict, answer: bool = True) -> list[dict]:
    turns = [{"role": "user", "content": row["instruction"]}, {"role": "assistant", "content": row["response"]}]
    return turns if answer else turns[:1]


def write_jsonl(path, rows: list[dict]):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def completion_model(gpt2_fixture, tmp_path_factory):
    return tune("completion", gpt2_fixture, tmp_path_factory.mktemp("completion"))


@pytest.fixture(scope="module")
def chat_model(gpt2_fixture, tmp_path_factory):
    return tune("chat", gpt2_fixture, tmp_path_factory.mktemp("chat"))


def tune(shape: str, gpt2_fixture, folder):
    """The GPT-2 fixture instruction-tuned a few steps on Dolly, as prompt/completion pairs written by a
    template, or as chats written by hftk's default chat template."""
    rows = dolly(24)
    if shape == "chat":
        data = {
            "shape": "chat",
            "train": str(write_jsonl(folder / "train.jsonl", [{"messages": chat(r)} for r in rows])),
        }
        extra = {}
    else:
        data = {"shape": "completion", "train": str(write_jsonl(folder / "train.jsonl", rows))}
        data["columns"] = {"prompt": "instruction", "context": "context", "completion": "response"}
        extra = {"prompt_template": "### Instruction:\n{prompt}\n\n### Context:\n{context}\n\n### Response:\n"}
    recipe = {
        "task": "causal-lm",
        "model": str(gpt2_fixture),
        "data": data,
        "max_length": 128,
        "generation": {"max_new_tokens": 12},
        "training": {"max_steps": 3, "learning_rate": 3e-3, "per_device_train_batch_size": 8},
        **extra,
    }
    return train(recipe, output_dir=folder / "run").output_dir


def stream(url: str, body: dict) -> tuple[str, list[dict]]:
    """(content type, events) of a streamed answer: each `data:` line's JSON, `event: error` marked as such."""
    request = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        kind, text = r.headers["content-type"], r.read().decode()
    events = []
    for block in text.split("\n\n")[:-1]:
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append({**json.loads(fields["data"]), **({"event": fields["event"]} if "event" in fields else {})})
    return kind, events


@pytest.mark.parametrize("shape", ["completion", "chat"])
def test_instruction_models_answer_prompts_and_chats_as_hftk_predict_does(shape, request, tmp_path):
    """The served answer is `hftk predict`'s for the same prompt or chat (greedy), without the prompt; streamed,
    its pieces make the same answer, and a last event holds it whole with why generation ended."""
    model, rows = request.getfixturevalue(f"{shape}_model"), dolly(30)[24:]  # rows it was not tuned on
    if shape == "chat":
        requests = [{"messages": chat(r, answer=False)} for r in rows]
        dev = write_jsonl(tmp_path / "dev.jsonl", requests)
    else:
        requests = [{"inputs": {"instruction": r["instruction"], "context": r["context"]}} for r in rows]
        dev = write_jsonl(tmp_path / "dev.jsonl", rows)
    cli("predict", model, "--input", dev, "--output", tmp_path / "out.jsonl")
    expected = [json.loads(line)["generated_text"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert all(expected) and not any("### Instruction" in a or "<|user|>" in a for a in expected)
    with serving(Predictor(model)) as url:
        assert call(f"{url}/metadata")[1]["streams"] is True
        for body, answer in zip(requests, expected):
            status, got, _ = call(f"{url}/predict", body)
            assert status == 200 and got == {"prediction": {"generated_text": answer}}, got
            kind, events = stream(f"{url}/predict", {**body, "stream": True})
            assert kind.startswith("text/event-stream")
            *pieces, last = events
            assert pieces and all(set(e) == {"text"} for e in pieces)
            assert "".join(e["text"] for e in pieces) == answer == last["generated_text"]
            details = last["details"]
            assert details["finish_reason"] in ("eos_token", "length") and 1 <= details["generated_tokens"] <= 12
            assert (details["finish_reason"] == "length") == (details["generated_tokens"] == 12)
        # Several at once, in a list: the same answers, batched.
        inputs = [b.get("inputs") or {"messages": b["messages"]} for b in requests]
        status, got, _ = call(f"{url}/predict", {"inputs": inputs})
        assert status == 200 and got["predictions"] == [{"generated_text": a} for a in expected]
        # A request may ask for fewer new tokens than the model's own max_new_tokens (12), not more: the answer is
        # the one the model gives with that setting.
        shorter = Predictor(model, **{"generation.max_new_tokens": 3}).predict(inputs[:1])
        status, got, _ = call(f"{url}/predict", {**requests[0], "options": {"max_new_tokens": 3}})
        assert status == 200 and got["prediction"] == shorter[0], got
        *pieces, last = stream(f"{url}/predict", {**requests[0], "stream": True, "options": {"max_new_tokens": 3}})[1]
        assert "".join(e["text"] for e in pieces) == shorter[0]["generated_text"] == last["generated_text"]
        assert last["details"]["generated_tokens"] <= 3
        status, got, _ = call(f"{url}/predict", {**requests[0], "options": {"max_new_tokens": 13}})
        assert status == 422 and got["error"] == "options.max_new_tokens: must be 12 or fewer, got 13"
        if shape == "completion":  # the prompt column alone: a row without a context
            row = next(r for r in rows if not r["context"])
            assert (
                call(f"{url}/predict", {"inputs": row["instruction"]})[1]
                == call(f"{url}/predict", {"inputs": {"instruction": row["instruction"]}})[1]
            )


USER = {"role": "user", "content": "Name a colour."}


@pytest.mark.parametrize(
    "body,needle",
    [
        ({"messages": [{"role": "bot", "content": "hi"}]}, "messages: message 1 has role 'bot'; use one of system"),
        ({"messages": []}, "messages: messages must be a non-empty list of {role, content}"),
        ({"messages": [USER, {"role": "user"}]}, "messages: message 2 must be {role: ..., content: text}"),
        ({"messages": [USER, {"role": "assistant", "content": "Red."}]}, "messages: the chat ends with an assistant"),
        ({"messages": [{"role": "user", "content": " "}]}, "messages: empty; send text"),
        ({"messages": [{"role": "user", "content": "x" * 501}]}, "messages: 501 characters, more than this server's"),
        ({"messages": [USER], "inputs": "x"}, "messages: send either inputs or messages, not both"),
        ({"inputs": "Name a colour."}, 'inputs: this model answers chats; send {"messages": '),
        ({"inputs": [{"messages": [{"role": "robot", "content": "x"}]}]}, "inputs.0.messages: message 1 has role"),
        ({"messages": [USER], "stream": "yes"}, 'stream: must be true or false, got "yes"'),
        ({"inputs": [{"messages": [USER]}] * 2, "stream": True}, "stream: streams one input, got 2"),
        ({"options": {}}, "messages: missing"),
    ],
)
def test_a_bad_chat_request_is_a_422_naming_the_field(chat_model, body, needle):
    with serving(Predictor(chat_model), max_input_chars=500) as url:
        status, answer, _ = call(f"{url}/predict", body)
        assert status == 422 and needle in answer["error"], answer
        streamed = {**body, "stream": True} if "stream" not in body else body
        status, answer, _ = call(f"{url}/predict", streamed)  # refused before any event: JSON, not a stream
        assert status == 422 and answer["error"], answer


def test_messages_to_a_model_that_takes_none_and_streams_of_one_that_cannot_are_refused(completion_model):
    with serving(Predictor(completion_model)) as url:
        status, answer, _ = call(f"{url}/predict", {"messages": [USER]})
        assert status == 422 and answer["error"].startswith(
            "messages: this model (text-generation, trained on data.shape completion, not on chats) takes no messages"
        )
    with serving(Predictor(MINILM, task="feature-extraction")) as url:
        status, answer, _ = call(f"{url}/predict", {"inputs": "a fine film", "stream": True})
        assert (
            status == 422
            and answer["error"] == "stream: only text generation streams; this model is feature-extraction"
        )
        assert call(f"{url}/metadata")[1]["streams"] is False


def test_a_client_that_goes_away_stops_its_generation(chat_model, monkeypatch):
    """Closing the connection after the first event stops generation at the next token (each piece is slowed
    down here so the model cannot finish first), and the server goes on."""
    predictor = Predictor(chat_model)
    original, ended = predictor.stream, []

    def slowed(input, on_text, stop=None, **options):
        def slow(text: str) -> None:
            on_text(text)
            time.sleep(0.3)

        prediction = original(input, slow, stop, **options)
        ended.append(prediction["details"])
        return prediction

    monkeypatch.setattr(predictor, "stream", slowed)
    body = json.dumps({"messages": [USER], "stream": True}).encode()
    with serving(predictor) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(
                b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            received = b""
            while b"data: " not in received:
                received += s.recv(4096)
        assert b"200 OK" in received and b"text/event-stream" in received
        deadline = time.monotonic() + 30
        while not ended and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ended == [{"finish_reason": "stopped", "generated_tokens": ended[0]["generated_tokens"]}]
        assert ended[0]["generated_tokens"] < 12
        assert call(f"{url}/health")[1] == {"status": "ok", "waiting": 0}
