"""`hftk serve`: a model behind HTTP JSON, with dynamic batching and a bounded queue (FastAPI on uvicorn).

    POST /predict  {"inputs": [...], "options": {"top_k": 2}}  ->  {"predictions": [...]}
    GET  /health   GET /metadata   GET /docs (OpenAPI)

Inputs and answers are those of `hftk predict`: a string per input (or an object with the task's columns, e.g.
{"question", "context"}), one prediction object per input, in order. Any model `hftk predict` takes is served.

Requests that arrive together are predicted together: the batcher takes the first waiting request and, while
other requests are in the server (being read, checked or queued), gathers what arrives within `max_wait_ms` of it
(requests that queued while the model was busy have waited already and join at once); a request alone is
predicted at once. The batch goes to the Predictor in one call, which tokenises it and runs it sorted by length
under a token budget. One thread runs the model; parsing, checking and encoding run on other threads, in steps
that hand the GIL back, so the event loop keeps answering (/health too) whatever a body holds.

Every dimension of a request is bounded by a flag: its body's bytes, its inputs, each input's characters (all its
texts, choices included) and choices, and its options (checked by the rules of `hftk predict`'s flags). Inputs
waiting are bounded (`max_queue`): past it a request gets 503 with Retry-After at once, so overload never grows
memory or waits. A request's headers, and then its body, must arrive within `request_timeout` seconds; idle
keep-alive connections close after 5. Every error is a JSON `{"error": ...}` naming the field and the fix; one
bad request never fails the others batched with it. `api_key` (--api-key, HFTK_API_KEY) makes every path but
/health ask for `Authorization: Bearer KEY`. SIGTERM stops accepting, finishes what is in flight and exits 0
(uvicorn's graceful shutdown).

`{"inputs": "text"}` (one input alone, a string or an object, as the HF Inference API takes it) is answered with
its prediction alone, `{"prediction": {...}}`, as that API answers a single input with its output, not a list.
A text-generation model trained on chats also takes `{"messages": [{"role": "user", "content": ...}]}`, one
chat written by its saved chat template; `"stream": true` (one input or chat) answers with server-sent events as
the text is generated (`_streamed`), generated alone on the model thread, within the same queue and limits.
Each request gets one access log line on stderr (method, path, status, inputs, milliseconds), and the server says
when it has stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request  # here, not in build_app: FastAPI reads the endpoint's annotations

from hftk.errors import HftkError
from hftk.inference.predict import Predictor
from hftk.inference.requests import Checked, ClientError, Limits, PredictRequest, Shape, parse_json

logger = logging.getLogger("hftk")

API_KEY_VARIABLE = "HFTK_API_KEY"
KEEP_ALIVE_S = 5  # an idle keep-alive connection closes after this long


@dataclass
class Stream:
    """Where a streamed request's text goes as it is generated (`on_text`, called on the model thread), and the
    event that stops its generation (the client went away)."""

    on_text: Callable[[str], None]
    stop: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Job:
    inputs: list[Any]
    options: dict[str, Any]
    group: str  # jobs of one group share a model call (Shape.check)
    arrived: float
    future: asyncio.Future = field(repr=False)
    stream: Stream | None = None  # generated alone, its text handed on as it comes


class Batcher:
    """Queues requests and predicts them in batches on one model thread (see the module docstring)."""

    def __init__(self, predictor: Predictor, limits: Limits) -> None:
        self.predictor = predictor
        self.limits = limits
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.waiting = 0  # inputs queued or being predicted
        self.active = 0  # POST /predict requests in the server, from their headers to their answer
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hftk-model")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.executor.shutdown(wait=True)

    async def submit(
        self, inputs: list[Any], options: dict[str, Any], group: str = "", stream: Stream | None = None
    ) -> list[dict[str, Any]]:
        if self.waiting + len(inputs) > self.limits.max_queue:
            raise ClientError(503, "the server is at capacity; retry shortly", {"Retry-After": "1"})
        job = _Job(inputs, options, group, time.monotonic(), asyncio.get_running_loop().create_future(), stream)
        self.waiting += len(inputs)
        self.queue.put_nowait(job)
        try:
            return await job.future
        finally:
            self.waiting -= len(inputs)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            size = len(batch[0].inputs)
            deadline = batch[0].arrived + self.limits.max_wait_ms / 1000
            # Wait for company only while other requests are in the server: a request alone goes at once.
            while size < self.limits.max_batch and (not self.queue.empty() or self.active > len(batch)):
                try:
                    wait = deadline - time.monotonic()
                    job = self.queue.get_nowait() if wait <= 0 else await asyncio.wait_for(self.queue.get(), wait)
                except (asyncio.QueueEmpty, TimeoutError):
                    break
                batch.append(job)
                size += len(job.inputs)
            outcomes = await loop.run_in_executor(self.executor, self._predict, batch)
            for job, outcome in zip(batch, outcomes):
                if job.future.done():  # the client went away
                    continue
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)

    def _predict(self, batch: list[_Job]) -> list[Any]:
        """Each job's predictions (or its error), the jobs of one group predicted in one call."""
        groups: dict[str, list[int]] = {}
        outcomes: list[Any] = [None] * len(batch)
        for i, job in enumerate(batch):
            if job.stream is not None:  # one sequence at a time: a streamer follows one
                # (not at all when its client went away while it queued)
                outcomes[i] = None if job.stream.stop.is_set() else self._alone(job)
            else:
                groups.setdefault(job.group, []).append(i)
        for members in groups.values():
            jobs = [batch[i] for i in members]
            try:
                results = self.predictor.predict([x for job in jobs for x in job.inputs], **jobs[0].options)
            except Exception:
                # One bad request must not fail the ones batched with it: each alone, to find which it was.
                for i in members:
                    outcomes[i] = self._alone(batch[i])
                continue
            start = 0
            for i, job in zip(members, jobs):
                outcomes[i] = results[start : start + len(job.inputs)]
                start += len(job.inputs)
        return outcomes

    def _alone(self, job: _Job) -> Any:
        try:
            if job.stream is not None:
                return [self.predictor.stream(job.inputs[0], job.stream.on_text, job.stream.stop, **job.options)]
            return self.predictor.predict(job.inputs, **job.options)
        except HftkError as e:
            return ClientError(422, str(e).replace("<inputs>: ", "", 1))
        except Exception as e:  # a fault of the server's, not of the request
            logger.exception("hftk serve: prediction failed")
            return e


def build_app(predictor: Predictor, limits: Limits | None = None, *, api_key: str | None = None) -> Any:
    """The ASGI application serving `predictor` (FastAPI; run it with uvicorn or any ASGI server, or with
    `server_config`, which adds hftk's timeouts for slow clients). `api_key`: the bearer token every path but
    /health asks for."""
    from fastapi import FastAPI
    from fastapi.responses import Response
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

    limits = limits or Limits()
    batcher = Batcher(predictor, limits)
    task = predictor.task
    shape = Shape.of(task)
    # Numbers, objects and lists a body may hold: the request, each input's object and list, the options.
    most_values = 3 * limits.max_inputs + 16

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        batcher.start()
        yield
        await batcher.stop()
        logger.warning("hftk: stopped serving after %d requests (%d inputs)", access.requests, access.inputs)

    app = FastAPI(title=f"hftk: {task.pipeline}", version=_version(), lifespan=lifespan)

    @app.exception_handler(ClientError)
    async def client_error(request: Request, e: ClientError) -> Response:
        return _error(e.status, e.message, e.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> Response:  # 404, 405
        paths = "POST /predict, GET /health, GET /metadata, GET /docs"
        return _error(e.status_code, f"{request.method} {request.url.path}: {e.detail.lower()}; {paths}", e.headers)

    @app.exception_handler(Exception)
    async def server_error(request: Request, e: Exception) -> Response:
        return _error(500, f"the server failed ({type(e).__name__}); its log says more")

    def read(body: bytes) -> Checked:
        return shape.check(parse_json(body, most_values), task, limits)

    schema = {"content": {"application/json": {"schema": PredictRequest.model_json_schema()}}, "required": True}

    @app.post("/predict", openapi_extra={"requestBody": schema})
    async def predict(request: Request) -> Response:
        batcher.active += 1
        try:
            try:
                body = await _body(request, limits)
            except ClientDisconnect:
                return Response(status_code=400)  # no one to answer
            checked = await asyncio.to_thread(read, body)
            request.scope[_INPUTS] = len(checked.inputs)  # for the access log
            if checked.stream:
                return await _streamed(batcher, checked)
            predictions = await batcher.submit(checked.inputs, checked.options, checked.group)
            answer = await asyncio.to_thread(_encode, predictions, single=checked.single)
            return Response(answer, media_type="application/json")
        finally:
            batcher.active -= 1

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "waiting": batcher.waiting}

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        names = task.names
        return {
            "task": task.pipeline,
            "model": str(predictor.model_ref),
            "labels": list(names) if names else None,
            "inputs": list(shape.required),
            "optional_inputs": [k for k in shape.keys if k not in shape.required],
            "device": predictor.policy.device,
            "precision": predictor.policy.precision,
            "streams": shape.streams,
            "limits": vars(limits),
            "hftk": _version(),
        }

    access = _AccessLog(_Guard(app, check_api_key(api_key)))  # the lifespan's line counts what it saw
    return access


async def _body(request: Any, limits: Limits) -> bytes:
    """The request's body, 413 past max_body_bytes (by its Content-Length, or counting what arrives: chunked),
    408 when it takes longer than request_timeout."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise ClientError(413, f"request body over {limits.max_body_bytes} bytes; send fewer or shorter inputs")
    parts, seen = [], 0
    try:
        async with asyncio.timeout(limits.request_timeout):
            async for part in request.stream():
                seen += len(part)
                if seen > limits.max_body_bytes:
                    raise ClientError(
                        413, f"request body over {limits.max_body_bytes} bytes; send fewer or shorter inputs"
                    )
                parts.append(part)
    except TimeoutError:
        raise ClientError(
            408,
            f"request body not complete within {limits.request_timeout:g} s; send it whole, or raise --request-timeout",
        ) from None
    return b"".join(parts)


async def _streamed(batcher: Batcher, checked: Checked) -> Any:
    """A generated answer as server-sent events: `data: {"text": ...}` for each piece as it is generated, then
    `data: {"generated_text": ..., "details": {...}}`, the whole answer. A request refused before its first piece
    (the queue full, an input the model cannot take) is answered as any other, a JSON error with its status; a
    failure after it is a last event, `event: error` with `data: {"error": ...}`. A client that goes away stops
    its generation at the next token."""
    from fastapi.responses import StreamingResponse

    loop = asyncio.get_running_loop()
    events: asyncio.Queue[Any] = asyncio.Queue()  # pieces of text, then the finished job
    stream = Stream(lambda text: loop.call_soon_threadsafe(events.put_nowait, text))
    # The job's end is queued behind its pieces: the model thread queued each before its result came back.
    job = asyncio.ensure_future(batcher.submit(checked.inputs, checked.options, checked.group, stream))
    job.add_done_callback(events.put_nowait)
    try:
        first = await events.get()
    except BaseException:
        stream.stop.set()
        job.cancel()
        raise
    if first is job:
        job.result()  # a refused request raises its ClientError here

    async def sse() -> Any:
        item = first
        try:
            while item is not job:
                yield _event({"text": item})
                item = await events.get()
            try:
                (prediction,) = job.result()
            except ClientError as e:
                yield _event({"error": e.message}, "error")
                return
            except Exception as e:
                yield _event({"error": f"the server failed ({type(e).__name__}); its log says more"}, "error")
                return
            yield _event(prediction)
        finally:  # the answer is complete, or the client went away
            stream.stop.set()
            job.cancel()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy holds the pieces back
    return StreamingResponse(sse(), media_type="text/event-stream", headers=headers)


def _event(data: dict[str, Any], name: str | None = None) -> bytes:
    """One server-sent event: its JSON on one `data:` line (JSON escapes newlines), an event name for errors."""
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _encode(predictions: list[dict[str, Any]], *, single: bool = False) -> bytes:
    """{"predictions": [...]} as UTF-8 JSON, one prediction at a time (one dumps of a large answer would hold
    the GIL for all of it); `single`: {"prediction": {...}}, the answer to one input sent alone."""
    if single:
        return json.dumps({"prediction": predictions[0]}, ensure_ascii=False).encode()
    rows = ",".join(json.dumps(p, ensure_ascii=False) for p in predictions)
    return f'{{"predictions":[{rows}]}}'.encode()


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
    from fastapi.responses import Response

    return Response(json.dumps({"error": message}), status, headers, media_type="application/json")


def check_api_key(key: str | None) -> bytes | None:
    """The `Authorization` header value a key asks for; None: no key. An empty or spaced key is an error."""
    if key is None:
        return None
    if not key or not key.isascii() or not key.isprintable() or " " in key:
        raise HftkError(
            f"--api-key (or {API_KEY_VARIABLE}): {'empty' if not key else 'has spaces or characters beyond ASCII'}"
            f"; give a key of letters, digits and punctuation (e.g. from `openssl rand -hex 32`), or none"
        )
    return b"Bearer " + key.encode()


_INPUTS = "hftk.inputs"  # the scope key where POST /predict leaves its number of inputs


class _AccessLog:
    """One line per HTTP request, written when its answer is complete: method, path, status, inputs (of a
    checked POST /predict, else '-') and milliseconds from its arrival. Outermost, so 401s are logged too."""

    def __init__(self, app: Any) -> None:
        self.app, self.requests, self.inputs = app, 0, 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.monotonic(), [0]  # 0: no answer sent (the client went away first)

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            inputs = scope.get(_INPUTS)
            self.requests += 1
            self.inputs += inputs or 0
            logger.warning(
                "hftk: %s %s %s %s inputs %.1f ms",
                scope["method"],
                scope["path"],
                status[0] or "-",
                "-" if inputs is None else inputs,
                (time.monotonic() - started) * 1000,
            )


class _Guard:
    """401 for a request without the server's bearer token, before its body is read; /health stays open (load
    balancers and probes call it without one)."""

    def __init__(self, app: Any, expected: bytes | None) -> None:
        self.app, self.expected = app, expected

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.expected is not None and scope["path"] != "/health":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = json.dumps(
                    {"error": "missing or wrong API key; send the header 'Authorization: Bearer KEY'"}
                ).encode()
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ]
                await send({"type": "http.response.start", "status": 401, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def server_config(app: Any, *, host: str = "127.0.0.1", port: int = 8000, limits: Limits | None = None) -> Any:
    """uvicorn's Config for `app`, with hftk's HTTP protocol (`_protocol`): what `hftk serve` runs."""
    import uvicorn

    timeout = (limits or Limits()).request_timeout
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=_protocol(timeout),
        log_level="warning",
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=60,
    )


def _protocol(header_timeout: float) -> type:
    """uvicorn's HTTP/1.1 protocol (h11) with a deadline for each request's headers, counted from the connection's
    start or its previous answer (uvicorn itself waits forever for a request begun and never finished: such
    connections would pile up), and its answer to malformed HTTP as JSON."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.cycle is not None and not self.cycle.response_complete:  # a request's headers are in
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.cycle.response_complete:  # not a pipelined next one
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(header_timeout, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

        def send_400_response(self, msg: str) -> None:
            body = json.dumps({"error": f"malformed HTTP request ({msg.rstrip('.')}); send HTTP/1.1"}).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            for event in (
                h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                h11.Data(data=body),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event))
            self.transport.close()

    return Protocol


def serve(
    model: str,
    *,
    task: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: Limits | None = None,
    recipe_overrides: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
    api_key: str | None = None,
) -> None:
    """Load the model and serve it until SIGTERM or Ctrl-C (then finish what is in flight and return).

    `api_key`: the bearer token requests must send (default: the HFTK_API_KEY environment variable, else none)."""
    import uvicorn

    if api_key is None:
        api_key = os.environ.get(API_KEY_VARIABLE)
    check_api_key(api_key)  # before the model loads
    if not _loopback(host):
        logger.warning(
            "hftk: warning: --host %s is not a loopback address: other machines can reach this server%s",
            host,
            "" if api_key else f"; anyone who reaches it may use it (set {API_KEY_VARIABLE} to ask for a key)",
        )
    predictor = Predictor(model, task=task, **{"trust_remote_code": trust_remote_code, **(recipe_overrides or {})})
    predictor.model  # noqa: B018 (load the weights now: the first request should not wait for them)
    app = build_app(predictor, limits, api_key=api_key)
    server = uvicorn.Server(server_config(app, host=host, port=port, limits=limits))
    logger.warning(
        "hftk: serving %s (%s, %s) on http://%s:%d  (POST /predict, GET /health, /metadata, /docs)%s",
        model,
        predictor.task.pipeline,
        predictor.policy.describe(),
        host,
        port,
        "; asks for an API key" if api_key else "",
    )
    # uvicorn re-raises the signal it stopped on once it has shut down; a handler here takes it, so a drained
    # server exits 0 instead of dying by SIGTERM.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hftk")
    except PackageNotFoundError:  # a source checkout on PYTHONPATH
        return "unknown"
