"""What `hftk serve` accepts: its limits, and a request body parsed and checked before the model sees it.

Every dimension is bounded (bytes, values while parsing, inputs, characters, choices, options); a problem is a
ClientError that the server answers as JSON `{"error": ...}` with its status, naming the field and the fix.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hftk.errors import SURROGATE, HftkError, did_you_mean
from hftk.features.instructions import checked_messages
from hftk.inference.predict import check_options
from hftk.tasks import Task


@dataclass(frozen=True)
class Limits:
    """What one server accepts; every limit is a flag of `hftk serve`."""

    max_wait_ms: float = 5.0  # longest a request waits for others to batch with
    max_batch: int = 512  # inputs handed to the model in one call
    max_queue: int = 2048  # inputs waiting; past it: 503
    max_inputs: int = 256  # inputs in one request
    max_input_chars: int = 20_000  # characters in one input (every text of it, choices included)
    max_choices: int = 16  # choices of one multiple-choice input
    max_body_bytes: int = 4_000_000
    request_timeout: float = 10.0  # seconds for a request's headers to arrive, and again for its body

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


FIELDS = ("inputs", "messages", "options", "stream")  # the fields of a request body


class PredictRequest(BaseModel):
    """The body of POST /predict, as /docs shows it (the server checks bodies itself: see `Shape`)."""

    model_config = ConfigDict(extra="forbid")
    inputs: list[str | dict[str, Any]] | str | dict[str, Any] = Field(
        description="a list of strings, or of objects with the model's input keys (GET /metadata: inputs): "
        'answered {"predictions": [...]}; or one string or object alone, as the HF Inference API takes it: '
        'answered {"prediction": {...}}'
    )
    messages: list[dict[str, str]] | None = Field(
        default=None,
        description="a chat model's one chat instead of inputs: [{role, content}, ...] ending with the turn to "
        'answer; the saved chat template writes the prompt. Answered {"prediction": {"generated_text": ...}}',
    )
    options: dict[str, Any] = Field(default_factory=dict, description="the task's options, e.g. top_k")
    stream: bool = Field(
        default=False,
        description="text generation, one input or chat: answer with server-sent events, each piece of text as it "
        "is generated, then the whole answer",
    )


# -- reading a request ---------------------------------------------------------------------------------------
# C's json.loads holds the GIL for a whole document: a body of a million numbers (2 MB) would stop the event loop
# for most of a second. Bodies with few JSON tokens (every ordinary request: text is one token) take it; others
# are parsed by json's own pure-Python scanner, which hands the GIL back as it goes and stops at the first value
# past what any request of these limits can hold.
_C_PARSE_TOKENS = 20_000  # ',', ':', '[' and '{' in a body at most for C's json.loads (a few ms)


class _TooManyValues(Exception):
    pass


def parse_json(body: bytes, most: int) -> Any:
    """The body's JSON; `most`: numbers, objects and lists it may hold (strings are not counted), else 413."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ClientError(400, f"malformed JSON: not UTF-8 (byte {e.start + 1} of the body); send UTF-8") from None
    try:
        if sum(map(body.count, (b",", b":", b"[", b"{"))) <= _C_PARSE_TOKENS:
            return json.loads(text)
        return _cooperative_loads(text, most)
    except json.JSONDecodeError as e:
        raise ClientError(400, f"malformed JSON: {e}") from None
    except RecursionError:
        raise ClientError(400, "malformed JSON: nested too deeply") from None
    except _TooManyValues:
        raise ClientError(
            413,
            f"request body holds more than {most} numbers, objects and lists, more than any request to this "
            "server can; send fewer inputs",
        ) from None


def _cooperative_loads(text: str, most: int) -> Any:
    count = 0

    def counted(scan: Any) -> Any:
        def scan_once(s: str, idx: int) -> tuple[Any, int]:
            nonlocal count
            value, end = scan(s, idx)
            if not isinstance(value, str):
                count += 1
                if count > most:
                    raise _TooManyValues
            return value, end

        return scan_once

    decoder = json.JSONDecoder()
    decoder.parse_array = lambda s_end, scan: json.decoder.JSONArray(s_end, counted(scan))
    decoder.parse_object = lambda s_end, strict, scan, *rest: json.decoder.JSONObject(
        s_end, strict, counted(scan), *rest
    )
    decoder.scan_once = json.scanner.py_make_scanner(decoder)
    return decoder.decode(text)


@dataclass(frozen=True)
class Checked:
    """A request's body, checked: what the batcher takes, and how the answer is shaped."""

    inputs: list[Any]
    options: dict[str, Any]
    group: str  # requests that may share a model call (same options, keys and number of choices)
    single: bool  # one input sent alone, not in a list: answered {"prediction": ...}
    stream: bool = False  # answered with server-sent events as the text is generated


@dataclass(frozen=True)
class Shape:
    """The inputs a task takes: text, or objects with its text keys (`required`, `optional`) and keys that hold a
    list of texts (`lists`: a multiple-choice column of choices, token classification's tokens)."""

    required: tuple[str, ...]
    optional: tuple[str, ...]
    lists: tuple[str, ...]
    choices: str | None  # the key of a multiple-choice input's list of choices
    nonblank: tuple[str, ...] = ()  # multiple-choice columns of one choice each: none may be blank
    chat: str | None = None  # the column of a chat model's messages (causal-lm, data.shape chat)
    streams: bool = False  # a text-generation model: a request may ask for a stream

    @classmethod
    def of(cls, task: Task) -> Shape:
        recipe = task.recipe
        spec = task.choices_input()
        choices = spec if isinstance(spec, str) else None
        tokens = recipe.data.column("tokens") if "tokens" in task.optional_roles else None
        lists = tuple(c for c in (choices, tokens) if c)
        optional = tuple(c for c in (recipe.data.column(r) for r in task.optional_roles) if c not in lists)
        nonblank = tuple(spec) if isinstance(spec, list) else ()
        chat = recipe.data.column("messages") if "messages" in task.input_roles else None
        streams = task.pipeline == "text-generation"
        return cls(tuple(task.input_columns()), optional, lists, choices, nonblank, chat, streams)

    @property
    def keys(self) -> list[str]:
        return list(dict.fromkeys([*self.required, *self.optional, *self.lists]))

    def check(self, body: Any, task: Task, limits: Limits) -> Checked:
        """A parsed body, every part checked."""
        if not isinstance(body, dict):
            raise ClientError(422, 'body: must be an object, {"inputs": [...], "options": {...}}')
        if extra := [k for k in body if k not in FIELDS]:
            raise ClientError(
                422,
                f"{_key(extra[0])}: not a field of the request{did_you_mean(extra[0], FIELDS)} (its fields: "
                f"{', '.join(FIELDS)})",
            )
        if "messages" in body:  # one chat, as OpenAI's and HF's chat APIs take it
            return self._chat_request(body, task, limits)
        if "inputs" not in body:
            if self.chat:
                raise ClientError(422, 'messages: missing; send {"messages": [{"role": "user", "content": "..."}]}')
            raise ClientError(422, 'inputs: missing; send {"inputs": ["text", ...]} or {"inputs": "text"}')
        inputs, options = body["inputs"], body.get("options") or {}
        # One input alone (a string, or an object of the task's keys), as the HF Inference API takes it: answered
        # with its prediction alone, as that API answers it.
        single = isinstance(inputs, (str, dict))
        if single:
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            raise ClientError(
                422, 'inputs: must be an input or a list of one or more inputs, e.g. {"inputs": ["text"]}'
            )
        if len(inputs) > limits.max_inputs:
            raise ClientError(
                413, f"inputs: {len(inputs)} in one request, more than this server's {limits.max_inputs}; split it"
            )
        options = _options(body, task)
        stream = self._stream(body, len(inputs), task)
        first: tuple[str, ...] | None = None
        for i, x in enumerate(inputs):
            keys = self._input("inputs" if single else f"inputs.{i}", x, limits)
            if first is None:
                first, n = keys, len(x[self.choices]) if self.choices and isinstance(x, dict) else 0
            elif keys != first:
                raise ClientError(
                    422,
                    f"inputs.{i}: has the keys {', '.join(keys)} but inputs.0 has {', '.join(first)}; send the "
                    "same keys in every input of a request",
                )
            elif self.choices and len(x[self.choices]) != n:
                raise ClientError(
                    422,
                    f"inputs.{i}.{self.choices}: {len(x[self.choices])} choices but inputs.0 has {n}; send the "
                    "same number in every input of a request",
                )
        return Checked(inputs, options, json.dumps([options, first, n], sort_keys=True), single, stream)

    def _chat_request(self, body: dict[str, Any], task: Task, limits: Limits) -> Checked:
        """`{"messages": [...]}`: one chat, the input {messages column: chat} of a chat model."""
        if "inputs" in body:
            raise ClientError(422, "messages: send either inputs or messages, not both")
        if self.chat is None:
            shape = getattr(task.recipe.data, "shape", None)
            trained = f"trained on data.shape {shape}, " if shape else ""
            raise ClientError(
                422,
                f"messages: this model ({task.pipeline}, {trained}not on chats) takes no messages; send "
                '{"inputs": ...} with its inputs (GET /metadata: inputs)',
            )
        options = _options(body, task)
        stream = self._stream(body, 1, task)
        self._bound("messages", self._messages("messages", body["messages"]), limits)
        group = json.dumps([options, [self.chat], 0], sort_keys=True)  # as the same chat sent in inputs
        return Checked([{self.chat: body["messages"]}], options, group, True, stream)

    def _stream(self, body: dict[str, Any], inputs: int, task: Task) -> bool:
        stream = body.get("stream", False)
        if stream is None or stream is False:
            return False
        if stream is not True:
            raise ClientError(422, f"stream: must be true or false, got {json.dumps(stream)[:40]}")
        if not self.streams:
            raise ClientError(422, f"stream: only text generation streams; this model is {task.pipeline}")
        if inputs != 1:
            raise ClientError(422, f"stream: streams one input, got {inputs}; send one prompt or chat")
        return True

    def _messages(self, where: str, v: Any) -> list[tuple[str, str]]:
        """A chat's turns checked as `hftk predict` checks a chat file's rows, ending with the turn to answer: its
        contents, for the bounds."""
        try:
            messages = checked_messages(where, v, training=False)
        except HftkError as e:
            raise ClientError(422, str(e)) from None
        if messages[-1]["role"] == "assistant":
            raise ClientError(
                422,
                f"{where}: the chat ends with an assistant turn; end it with the turn the model should answer",
            )
        return [(f"{where}.{n}.content", m["content"]) for n, m in enumerate(messages)]

    def _input(self, where: str, x: Any, limits: Limits) -> tuple[str, ...]:
        """The keys of one input, checked: its texts (and lists of texts) bounded, present and not blank."""
        items: list[tuple[str, str]] = []  # the texts of its lists (choices, tokens)
        if isinstance(x, str):
            if self.chat:
                raise ClientError(
                    422,
                    f'{where}: this model answers chats; send {{"messages": [{{"role": "user", "content": "..."}}]}}',
                )
            if len(self.required) > 1 or self.choices:
                raise ClientError(422, f"{where}: this model takes objects with the keys {', '.join(self.keys)}")
            texts = [(where, x)]
            keys: tuple[str, ...] = tuple(self.required)
        elif isinstance(x, dict):
            if unknown := [k for k in x if k not in self.keys]:
                raise ClientError(
                    422,
                    f"{where}: the key {_key(unknown[0])} is not an input of this model (its keys: "
                    f"{', '.join(self.keys)})",
                )
            if missing := [k for k in self.required if k not in x]:
                raise ClientError(422, f"{where}: needs the text key(s) {', '.join(missing)}")
            texts = []
            for k, v in x.items():
                if k == self.chat:
                    texts += self._messages(f"{where}.{k}", v)
                elif k in self.lists:
                    items += self._list(f"{where}.{k}", v, limits, choices=k == self.choices)
                elif isinstance(v, str):
                    if k in self.nonblank and not v.strip():
                        raise ClientError(422, f"{where}.{k}: empty; send text")
                    texts.append((f"{where}.{k}", v))
                else:
                    raise ClientError(422, f"{where}.{k}: must be text, got {_kind(v)}")
            keys = tuple(sorted(x))
        else:
            raise ClientError(422, f"{where}: must be text, or an object with the keys {', '.join(self.keys)}")
        self._bound(where, texts, limits, items)
        return keys

    def _bound(
        self, where: str, texts: list[tuple[str, str]], limits: Limits, items: list[tuple[str, str]] | None = None
    ) -> None:
        """An input's texts (and the items of its lists) not all blank, valid Unicode and within max_input_chars."""
        if not any(t.strip() for _, t in texts):
            raise ClientError(422, f"{where}: empty; send text")
        texts = texts + (items or [])
        length = 0
        for place, t in texts:
            if (bad := SURROGATE.search(t)) is not None:
                raise ClientError(
                    422,
                    f"{place}: not valid Unicode (a lone surrogate \\u{ord(bad.group()):04x} at character "
                    f"{bad.start() + 1}); send UTF-8 text",
                )
            length += max(len(t), 1)  # an empty item of a list counts too: every item costs the model a step
        if length > limits.max_input_chars:
            raise ClientError(
                422, f"{where}: {length} characters, more than this server's {limits.max_input_chars}; shorten it"
            )

    def _list(self, where: str, v: Any, limits: Limits, *, choices: bool) -> list[tuple[str, str]]:
        if not isinstance(v, list):
            raise ClientError(422, f"{where}: must be a list of texts, got {_kind(v)}")
        if choices and not 2 <= len(v) <= limits.max_choices:
            raise ClientError(
                413 if len(v) > limits.max_choices else 422,
                f"{where}: {len(v)} choices; send 2 to {limits.max_choices} (this server's --max-choices)",
            )
        if len(v) > limits.max_input_chars:  # checked before the items: each is at least a character
            raise ClientError(
                422, f"{where}: {len(v)} items, more than this server's {limits.max_input_chars} characters; shorten it"
            )
        out = []
        for j, t in enumerate(v):
            if not isinstance(t, str):
                raise ClientError(422, f"{where}.{j}: must be text, got {_kind(t)}")
            if choices and not t.strip():
                raise ClientError(422, f"{where}.{j}: empty; send text")
            out.append((f"{where}.{j}", t))
        return out


def _options(body: dict[str, Any], task: Task) -> dict[str, Any]:
    """A request's options, checked by the rules of `hftk predict`'s flags."""
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise ClientError(422, 'options: must be an object, e.g. {"top_k": 2}')
    options = {k: v for k, v in options.items() if v is not None}  # null: the default, as an absent flag
    try:
        check_options(task, options, flags=False)
    except HftkError as e:
        raise ClientError(422, f"options.{e}") from None
    return options


def _kind(v: Any) -> str:
    """A JSON value's type as the client wrote it."""
    if v is None:
        return "null"
    return {bool: "true or false", int: "a number", float: "a number", list: "a list", dict: "an object"}.get(
        type(v), type(v).__name__
    )


def _key(k: str) -> str:
    return json.dumps(k)[:80]  # quoted, a lone surrogate escaped: the error line stays valid UTF-8
