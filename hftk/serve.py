"""`hftk serve`: a model behind HTTP JSON, with dynamic batching and a bounded queue (FastAPI on uvicorn).

    POST /predict  {"inputs": [...], "options": {"top_k": 2}}  ->  {"predictions": [...]}
    GET  /health   GET /metadata   GET /docs (OpenAPI)

Inputs and answers are those of `hftk predict`: a string per input (or an object with the task's columns, e.g.
{"question", "context"}), one prediction object per input, in order. Any model `hftk predict` takes is served.

Requests that arrive together are predicted together: the batcher takes the first waiting request, gathers what
else arrives within `max_wait_ms` of it (requests that queued while the model was busy have waited already and
join at once), and hands them to the Predictor in one call, which tokenises them together and runs them sorted by
length under a token budget. One thread runs the model, so the event loop keeps answering. Inputs waiting are
bounded (`max_queue`): past it a request gets 503 with Retry-After at once, so overload never grows memory or waits.
Bad requests get a 4xx JSON `{"error": ...}` naming the problem; one bad request never fails the others batched
with it. SIGTERM stops accepting, finishes what is in flight and exits 0 (uvicorn's graceful shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hftk.errors import HftkError
from hftk.predict import Predictor, check_options

logger = logging.getLogger("hftk")


@dataclass(frozen=True)
class Limits:
    """What one server accepts; every limit is a flag of `hftk serve`."""

    max_wait_ms: float = 5.0  # longest a request waits for others to batch with
    max_batch: int = 512  # inputs handed to the model in one call
    max_queue: int = 2048  # inputs waiting; past it: 503
    max_inputs: int = 256  # inputs in one request
    max_input_chars: int = 20_000  # characters in one input (every text field of it)
    max_body_bytes: int = 4_000_000

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            waits = name == "max_wait_ms"  # 0: no waiting for company
            if value < 0 or (value == 0 and not waits):
                raise HftkError(f"--{name.replace('_', '-')} {value}: must be {'0 or more' if waits else 'above 0'}")
        if self.max_inputs > self.max_queue:
            raise HftkError(
                f"--max-inputs {self.max_inputs} is more than --max-queue {self.max_queue}: every full request "
                "would be refused; raise --max-queue or lower --max-inputs"
            )


class ClientError(Exception):
    """A request the server refuses: its HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class PredictRequest(BaseModel):
    """The body of POST /predict."""

    model_config = ConfigDict(extra="forbid")
    inputs: list[str | dict[str, Any]] = Field(
        min_length=1, description="strings, or objects with the model's input keys (GET /metadata: inputs)"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="the task's options, e.g. top_k")


@dataclass
class _Job:
    inputs: list[Any]
    options: dict[str, Any]
    arrived: float
    future: asyncio.Future = field(repr=False)


class Batcher:
    """Queues requests and predicts them in batches on one model thread (see the module docstring)."""

    def __init__(self, predictor: Predictor, limits: Limits) -> None:
        self.predictor = predictor
        self.limits = limits
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.waiting = 0  # inputs queued or being predicted
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

    async def submit(self, inputs: list[Any], options: dict[str, Any]) -> list[dict[str, Any]]:
        if self.waiting + len(inputs) > self.limits.max_queue:
            raise ClientError(503, "the server is at capacity; retry shortly", {"Retry-After": "1"})
        job = _Job(inputs, options, time.monotonic(), asyncio.get_running_loop().create_future())
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
            while size < self.limits.max_batch:
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
        """Each job's predictions (or its error), requests with the same options predicted in one call."""
        groups: dict[str, list[int]] = {}
        for i, job in enumerate(batch):
            groups.setdefault(json.dumps(job.options, sort_keys=True), []).append(i)
        outcomes: list[Any] = [None] * len(batch)
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
            return self.predictor.predict(job.inputs, **job.options)
        except HftkError as e:
            return ClientError(422, str(e).replace("<inputs>: ", "", 1))
        except Exception as e:  # a fault of the server's, not of the request
            logger.exception("hftk serve: prediction failed")
            return e


def build_app(predictor: Predictor, limits: Limits | None = None) -> Any:
    """The ASGI application serving `predictor` (FastAPI; run it with uvicorn or any ASGI server)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    limits = limits or Limits()
    batcher = Batcher(predictor, limits)
    task = predictor.task
    columns = [predictor.recipe.data.column(r) for r in task.input_roles]
    keys = "the keys " + ", ".join(columns)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title=f"hftk: {task.pipeline}", version=_version(), lifespan=lifespan)

    @app.exception_handler(ClientError)
    async def client_error(request: Request, e: ClientError) -> JSONResponse:
        return JSONResponse({"error": e.message}, status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        err = e.errors()[0]
        if err["type"] == "json_invalid":
            return JSONResponse({"error": f"malformed JSON: {err.get('ctx', {}).get('error', err['msg'])}"}, 400)
        loc = [str(p) for p in err["loc"] if p != "body"]
        if len(loc) > 2 and loc[0] == "inputs":  # which member of `str | dict` failed says nothing to a user
            return JSONResponse({"error": f"inputs.{loc[1]}: must be text, or an object with {keys}"}, 422)
        return JSONResponse({"error": f"{'.'.join(loc) or 'body'}: {err['msg']}"}, status_code=422)

    @app.post("/predict")
    async def predict(request: PredictRequest) -> dict[str, Any]:
        _check_inputs(request.inputs, columns, limits)
        try:
            check_options(task, request.options, flags=False)
        except HftkError as e:
            raise ClientError(422, f"options: {e}") from None
        return {"predictions": await batcher.submit(request.inputs, request.options)}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "waiting": batcher.waiting}

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        names = getattr(task, "names", None)
        return {
            "task": task.pipeline,
            "model": str(predictor.model_ref),
            "labels": list(names) if names else None,
            "inputs": columns,
            "device": predictor.policy.device,
            "precision": predictor.policy.precision,
            "limits": vars(limits),
            "hftk": _version(),
        }

    return _BodyLimit(app, limits.max_body_bytes)


def _check_inputs(inputs: list[Any], columns: list[str], limits: Limits) -> None:
    if len(inputs) > limits.max_inputs:
        raise ClientError(
            413, f"inputs: {len(inputs)} in one request, more than this server's {limits.max_inputs}; split it"
        )
    for i, x in enumerate(inputs):
        if isinstance(x, str):
            if len(columns) > 1:
                raise ClientError(422, f"inputs.{i}: this model takes objects with the keys {', '.join(columns)}")
            texts = [x]
        else:
            missing = [c for c in columns if not isinstance(x.get(c), str)]
            if missing:
                raise ClientError(422, f"inputs.{i}: needs the text key(s) {', '.join(missing)}")
            texts = [v for v in x.values() if isinstance(v, str)]
        if not any(t.strip() for t in texts):
            raise ClientError(422, f"inputs.{i}: empty; send text")
        length = sum(len(t) for t in texts)
        if length > limits.max_input_chars:
            raise ClientError(
                422, f"inputs.{i}: {length} characters, more than this server's {limits.max_input_chars}; shorten it"
            )


class _BodyLimit:
    """413 for a request body over the limit, by its Content-Length or by counting what arrives."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        seen = 0
        started = False

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        async def tracked(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps({"error": f"request body over {self.limit} bytes; send fewer or shorter inputs"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def serve(
    model: str,
    *,
    task: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: Limits | None = None,
    recipe_overrides: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
) -> None:
    """Load the model and serve it until SIGTERM or Ctrl-C (then finish what is in flight and return)."""
    import uvicorn

    predictor = Predictor(model, task=task, **{"trust_remote_code": trust_remote_code, **(recipe_overrides or {})})
    predictor.model  # noqa: B018 (load the weights now: the first request should not wait for them)
    app = build_app(predictor, limits)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=60)
    server = uvicorn.Server(config)
    logger.warning(
        "hftk: serving %s (%s, %s) on http://%s:%d  (POST /predict, GET /health, /metadata, /docs)",
        model,
        predictor.task.pipeline,
        predictor.policy.describe(),
        host,
        port,
    )
    # uvicorn re-raises the signal it stopped on once it has shut down; a handler here takes it, so a drained
    # server exits 0 instead of dying by SIGTERM.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hftk")
    except PackageNotFoundError:  # a source checkout on PYTHONPATH
        return "unknown"
