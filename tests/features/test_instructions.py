"""hftk/features/instructions.py on the GPT-2 fixture's real byte-level BPE and real Dolly rows: the loss sees the
answer tokens and nothing else, token by token; truncation keeps the answer; chat turns are found in the template's
rendering."""

import json
import re

import pytest

from hftk import HftkError
from hftk.features.instructions import (
    DEFAULT_CHAT_TEMPLATE,
    IGNORED,
    chat_segments,
    checked_messages,
    encode_segments,
    render_prompt,
    template_problem,
)
from hftk.models.loading import load_tokenizer

from ..helpers import DATA

TEMPLATE = "### Instruction:\n{prompt}\n\n### Context:\n{context}\n\n### Response:\n"


@pytest.fixture(scope="module")
def gpt2_tok(gpt2_fixture):
    tok = load_tokenizer(str(gpt2_fixture))
    tok.chat_template = DEFAULT_CHAT_TEMPLATE
    return tok


@pytest.fixture(scope="module")
def dolly():
    return [json.loads(line) for line in (DATA / "en/dolly/train.jsonl").read_text().splitlines()]


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def prompt_of(row):
    return render_prompt(TEMPLATE, {"prompt": row["instruction"], "context": row["context"]})


def test_template_leaves_out_empty_paragraphs_and_refuses_what_drops_the_instruction(dolly):
    without = next(r for r in dolly if not r["context"])
    assert prompt_of(without) == f"### Instruction:\n{without['instruction']}\n\n### Response:\n"
    with_context = next(r for r in dolly if r["context"])
    assert f"### Context:\n{with_context['context']}\n\n" in prompt_of(with_context)
    assert "has no {prompt}" in template_problem("{context}\n\n### Response:\n")
    assert "names {completion}" in template_problem("{prompt}\n{completion}")
    assert "unknown field {instruction}" in template_problem("{instruction}\n{prompt}")
    assert "not a template" in template_problem("{prompt")
    assert template_problem(TEMPLATE) is None


def test_completion_labels_are_the_answer_and_eos_token_by_token(gpt2_tok, dolly):
    tok, eos = gpt2_tok, gpt2_tok.eos_token_id
    for row in dolly[:20]:
        prompt, answer = prompt_of(row), row["response"]
        ex = encode_segments(tok, [(prompt, False), (answer, True)], 10_000, eos=eos)
        p, a = ids(tok, prompt), ids(tok, answer)
        assert ex.input_ids == p + a + [eos]
        assert ex.labels == [IGNORED] * len(p) + a + [eos]
        assert tok.decode([t for t in ex.labels if t != IGNORED]) == answer + tok.eos_token
        assert not ex.answer_cut and ex.length == len(ex.input_ids)
        everything = encode_segments(tok, [(prompt, False), (answer, True)], 10_000, eos=eos, train_on_prompt=True)
        assert everything.labels == everything.input_ids == ex.input_ids


def test_truncation_cuts_the_prompt_from_the_left_and_keeps_the_answer(gpt2_tok, dolly):
    tok, eos = gpt2_tok, gpt2_tok.eos_token_id
    row = next(r for r in dolly if len(ids(tok, r["context"])) > 300 and 20 < len(ids(tok, r["response"])) < 100)
    prompt, answer = prompt_of(row), row["response"]
    full = ids(tok, prompt) + ids(tok, answer) + [eos]
    ex = encode_segments(tok, [(prompt, False), (answer, True)], 200, eos=eos)
    assert ex.input_ids == full[-200:] and ex.length == len(full) and not ex.answer_cut
    a = len(ids(tok, answer)) + 1
    assert ex.labels == [IGNORED] * (200 - a) + full[-a:]
    # An answer longer than max_length: the prompt keeps its last half of max_length, the answer its start.
    long_answer = row["context"]
    ex = encode_segments(tok, [(row["instruction"], False), (long_answer, True)], 64, eos=eos)
    p, a = ids(tok, row["instruction"]), ids(tok, long_answer)
    keep = min(len(p), 32)
    assert ex.answer_cut and ex.input_ids == p[len(p) - keep :] + a[: 64 - keep]
    assert ex.labels == [IGNORED] * keep + a[: 64 - keep]


def test_chat_labels_are_the_assistant_turns_with_their_eos(gpt2_tok, dolly):
    tok = gpt2_tok
    r1, r2 = dolly[0], dolly[1]
    chat = [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": r1["instruction"]},
        {"role": "assistant", "content": r1["response"]},
        {"role": "user", "content": r2["instruction"]},
        {"role": "assistant", "content": r2["response"]},
    ]
    segments = chat_segments(tok, checked_messages("x", chat, training=True), "chats.jsonl:1")
    assert [s for s, answer in segments if answer] == [r1["response"] + tok.eos_token, r2["response"] + tok.eos_token]
    assert "".join(s for s, _ in segments) == tok.apply_chat_template(chat, tokenize=False)
    ex = encode_segments(tok, segments, 10_000)
    expected_labels = []
    for text, answer in segments:
        piece = ids(tok, text)
        expected_labels += piece if answer else [IGNORED] * len(piece)
    assert ex.labels == expected_labels
    labelled = [t for t in ex.labels if t != IGNORED]
    assert labelled == [*ids(tok, r1["response"]), tok.eos_token_id, *ids(tok, r2["response"]), tok.eos_token_id]
    # Inference builds the same prompt: the chat up to an answer, with the generation prompt, is what precedes it.
    prompt = tok.apply_chat_template(chat[:2], tokenize=False, add_generation_prompt=True)
    assert "".join(s for s, _ in segments[:1]) == prompt


def test_chat_problems_name_the_row(gpt2_tok):
    where = "chats.jsonl:3"
    with pytest.raises(HftkError, match=re.escape("chats.jsonl:3: message 1 has role 'bot'; use one of system, user")):
        checked_messages(where, [{"role": "bot", "content": "hi"}], training=False)
    with pytest.raises(
        HftkError, match=re.escape("chats.jsonl:3: the chat ends with a user turn; a training chat ends")
    ):
        checked_messages(where, [{"role": "user", "content": "hi"}], training=True)
    checked_messages(where, [{"role": "user", "content": "hi"}], training=False)  # a prompt to answer
    with pytest.raises(HftkError, match=re.escape("message 2 is an empty assistant turn")):
        checked_messages(
            where, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}], training=True
        )
    drops = gpt2_tok.__class__.from_pretrained(gpt2_tok.name_or_path)
    drops.chat_template = (
        "{% for m in messages %}{% if m['role'] != 'assistant' %}{{ m['content'] }}{% endif %}{% endfor %}"
    )
    chat = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]
    with pytest.raises(HftkError, match=re.escape("chats.jsonl:3: the chat template does not render assistant turn 2")):
        chat_segments(drops, chat, where)
