"""Instruction data into token ids and labels: prompt -> completion pairs and chats, with the loss on the answers.

A training example is a list of text segments, each marked prompt or answer: `[prompt, completion]` for a
prompt/completion row (the prompt rendered by the recipe's `prompt_template`), or the chat rendered by its chat
template and cut where each assistant turn starts and ends. Each segment is tokenised on its own, so the prompt's
tokens are exactly those the model is given at inference (the prompt is tokenised alone there too) and no token
straddles the prompt/answer boundary. Labels are the answer tokens; every other token is -100 (not scored) unless
the recipe says `train_on_prompt: true`.

Truncation keeps the answer: the prompt loses tokens from its start (the instruction's end, next to the answer,
is what the answer follows); only an answer longer than `max_length` on its own is cut, which `hftk check` counts.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hftk.errors import HftkError

IGNORED = -100  # the label of a token the loss does not see (transformers' convention)
PROMPT_FIELDS = ("prompt", "context", "system")  # the roles a prompt_template may name
ROLES = ("system", "user", "assistant", "tool")

# Used when neither the tokenizer nor the recipe has a chat template: Zephyr's layout (a `<|role|>` line, then the
# content), with the tokenizer's EOS closing every turn, so a trained model ends its answer with EOS and stops.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def template_fields(template: str) -> list[str]:
    """The `{field}` names of a prompt template, in order."""
    return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]


def template_problem(template: str) -> str | None:
    """Why a recipe's prompt_template cannot build prompts (None: it can)."""
    try:
        fields = template_fields(template)
    except ValueError as e:  # an unmatched brace
        return f"not a template ({e}); write a literal brace as {{{{ or }}}}"
    if "completion" in fields:
        return "names {completion}: the answer would be in the prompt the model learns to answer; remove it"
    unknown = [f for f in fields if f not in PROMPT_FIELDS]
    if unknown:
        return f"unknown field {{{unknown[0]}}}; a template names the roles {', '.join(PROMPT_FIELDS)}"
    if "prompt" not in fields:
        return "has no {prompt}: every row's instruction would be dropped; add it where the instruction goes"
    return None


def render_prompt(template: str, values: dict[str, str]) -> str:
    """The template filled in. A paragraph of the template (text between blank lines) whose fields are all empty is
    left out, so one template serves rows with and without a context (Dolly: 71 % have none)."""
    kept = []
    for paragraph in template.split("\n\n"):
        fields = template_fields(paragraph)
        if fields and not any(values.get(f, "").strip() for f in fields):
            continue
        kept.append(paragraph.format(**values))
    return "\n\n".join(kept)


def checked_messages(where: str, messages: Any, *, training: bool) -> list[dict[str, str]]:
    """A row's `messages` (OpenAI/HF chat format), checked: a list of {role, content} with known roles and text;
    in training, ending with an assistant turn (the answer the loss sees), no answer empty."""
    if not isinstance(messages, list) or not messages:
        raise HftkError(f"{where}: messages must be a non-empty list of {{role, content}}, got {messages!r:.80}")
    for n, m in enumerate(messages, 1):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise HftkError(f"{where}: message {n} must be {{role: ..., content: text}}, got {m!r:.80}")
        if m["role"] not in ROLES:
            raise HftkError(f"{where}: message {n} has role {m['role']!r}; use one of {', '.join(ROLES)}")
        if training and m["role"] == "assistant" and not m["content"].strip():
            raise HftkError(f"{where}: message {n} is an empty assistant turn; give the answer or drop the turn")
    if training and messages[-1]["role"] != "assistant":
        raise HftkError(
            f"{where}: the chat ends with a {messages[-1]['role']} turn; a training chat ends with the assistant's "
            "answer (the loss sees the assistant turns)"
        )
    return messages


def chat_segments(tokenizer: Any, messages: list[dict[str, str]], where: str) -> list[tuple[str, bool]]:
    """The chat rendered by the tokenizer's chat template, as (text, is_answer) segments: an assistant turn is the
    text its rendering adds after the generation prompt of the turns before it (its end-of-turn marker included)."""

    def render(turns: list[dict[str, str]], prompt: bool) -> str:
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=prompt)

    full = render(messages, False)
    segments: list[tuple[str, bool]] = []
    done = 0  # characters of `full` already in segments
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start, end = len(render(messages[:i], True)), len(render(messages[: i + 1], False))
        answer = full[start:end]
        if start < done or not full.startswith(render(messages[: i + 1], False)) or m["content"].strip() not in answer:
            raise HftkError(
                f"{where}: the chat template does not render assistant turn {i + 1} as it renders the chat up to "
                "it followed by its answer, so its tokens cannot be found; use a template that writes each "
                "turn's content once, after the generation prompt (or the default: remove chat_template)"
            )
        segments += [(full[done:start], False), (answer, True)]
        done = end
    if done < len(full):
        segments.append((full[done:], False))
    return segments


@dataclass
class Example:
    """One encoded training example: its ids, their labels, and what truncation cost it."""

    input_ids: list[int]
    labels: list[int]
    length: int  # tokens before truncation
    answer_cut: bool  # some answer token did not fit in max_length


def encode_segments(
    tokenizer: Any,
    segments: Sequence[tuple[str, bool]],
    max_length: int,
    *,
    prefix: Sequence[int] = (),
    eos: int | None = None,
    train_on_prompt: bool = False,
) -> Example:
    """Segments -> ids and labels: `prefix` first (the tokenizer's BOS), `eos` after each answer.

    Too long: the last `max_length` tokens are kept when the last answer fits with room for a token of prompt
    before it; otherwise the prompt keeps at most half of `max_length` (its end) and the answer is cut at its end.
    """
    ids, answer = list(prefix), [False] * len(prefix)
    for text, is_answer in segments:
        piece = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"] if text else []
        if is_answer and eos is not None:
            piece = [*piece, eos]
        ids += piece
        answer += [is_answer] * len(piece)
    n = len(ids)
    keep = slice(0, n)
    cut_to: list[int] | None = None
    if n > max_length:
        last = max(i for i, a in enumerate(answer) if a) if any(answer) else n - 1
        first = last
        while first > 0 and answer[first - 1]:
            first -= 1
        if last + 1 - first < max_length:
            keep = slice(n - max_length, n)
        else:
            context = min(first, max_length // 2)
            cut_to = [*range(first - context, first), *range(first, first + max_length - context)]
    index = cut_to if cut_to is not None else list(range(n))[keep]
    kept_ids = [ids[i] for i in index]
    labels = [ids[i] if (answer[i] or train_on_prompt) else IGNORED for i in index]
    answer_cut = sum(answer[i] for i in index) < sum(answer)
    return Example(kept_ids, labels, n, answer_cut)
