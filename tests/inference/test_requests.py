"""hftk/inference/requests.py: every dimension of a request bounded, by task, before any of it reaches the model;
bodies refused while they are parsed."""

from __future__ import annotations

import json

import pytest

from hftk.inference.requests import ClientError, Limits, Shape, parse_json

from ..helpers import served_task


@pytest.mark.parametrize(
    ("name", "fields", "x", "needle"),
    [
        ("question-answering", {}, {"question": "q" * 15_000, "context": "c" * 5_001}, "inputs.0: 20001 characters"),
        ("question-answering", {}, {"question": "who?"}, "inputs.0: needs the text key(s) context"),
        ("question-answering", {}, "who?", "inputs.0: this model takes objects with the keys question, context, id"),
        ("question-answering", {}, {"question": "q", "context": "c", "id": 7}, "inputs.0.id: must be text"),
        ("text-classification", {}, {"text": "a", "text_pair": "b" * 20_000}, "inputs.0: 20001 characters"),
        ("token-classification", {}, {"text": "a b", "tokens": [""] * 1_000_000}, "inputs.0.tokens: 1000000 items"),
        (
            "token-classification",
            {},
            {"text": "a b", "tokens": ["a", None]},
            "inputs.0.tokens.1: must be text, got null",
        ),
        ("multiple-choice", {"choices": ["c0", "c1"]}, {"question": "q", "c0": "a", "c1": ""}, "inputs.0.c1: empty"),
        ("multiple-choice", {"choices": ["c0", "c1"]}, {"question": "q", "c0": "a"}, "needs the text key(s) c1"),
        ("feature-extraction", {}, "x" * 20_001, "inputs.0: 20001 characters"),
        ("feature-extraction", {}, {"text": "\udc00"}, "inputs.0.text: not valid Unicode"),
    ],
)
def test_every_tasks_request_shape_is_bounded(tok, name, fields, x, needle):
    """What each task's requests hold (texts, pairs, questions and contexts, tokens, choice columns), checked
    with the server's own limits before any of it reaches the model."""
    limits = Limits()
    t = served_task(tok, name, **fields)
    shape = Shape.of(t)
    with pytest.raises(ClientError) as e:
        shape.check({"inputs": [x]}, t, limits)
    assert e.value.status == 422 and needle in e.value.message, e.value.message
    with pytest.raises(ClientError) as e:
        shape.check({"inputs": ["x"] * 257}, t, limits)
    assert e.value.status == 413 and "inputs: 257 in one request, more than this server's 256" in e.value.message


def test_a_body_of_many_values_is_refused_as_it_is_parsed():
    """The parse itself is bounded: it stops at the first value past what a request can hold, so its cost is
    that of the values a request may have, not of the body's million."""
    body = b'{"inputs": [' + b",".join([b"0"] * 1_000_000) + b"]}"
    with pytest.raises(ClientError) as e:
        parse_json(body, 100)
    assert e.value.status == 413 and "more than 100 numbers" in e.value.message
    ok = {"inputs": ["a, b, c: [d]"] * 30_000, "options": {"top_k": 2}}  # commas in text: the stepwise parser
    assert parse_json(json.dumps(ok).encode(), 100) == ok
    with pytest.raises(ClientError, match="malformed JSON: nested too deeply"):
        parse_json(b"[" * 100_000 + b"]" * 100_000, 100)


def test_one_input_alone_is_a_request_of_one(tok):
    """{"inputs": "text"} or one object, as the HF Inference API takes them: one input, answered alone (`single`);
    its errors name `inputs`, not an index the client never wrote."""
    limits = Limits()
    qa = served_task(tok, "question-answering")
    row = {"question": "Who?", "context": "Alice did."}
    checked = Shape.of(qa).check({"inputs": row}, qa, limits)
    assert checked.single and checked.inputs == [row]
    assert not Shape.of(qa).check({"inputs": [row]}, qa, limits).single
    with pytest.raises(ClientError, match=r"^inputs: needs the text key\(s\) context$"):
        Shape.of(qa).check({"inputs": {"question": "Who?"}}, qa, limits)
    text = served_task(tok, "text-classification")
    checked = Shape.of(text).check({"inputs": "a gripping film"}, text, limits)
    assert checked.single and checked.inputs == ["a gripping film"]
    with pytest.raises(ClientError, match=r"^\"inputz\": not a field of the request \(did you mean 'inputs'\?\)"):
        Shape.of(text).check({"inputz": "a gripping film"}, text, limits)
