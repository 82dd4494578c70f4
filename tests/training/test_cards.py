"""Every model card's "Use" snippet runs as it stands: each task family is trained for two steps on real rows,
every ```python block of its README.md is run by a fresh Python from another directory, and it must exit 0 and
print a prediction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hftk import train

from ..helpers import DATA, QUICK, ROOT, SHARED, head, run_card


def squad_rows(d: Path, n: int) -> Path:
    """The first n questions of SQuAD's validation file, flat (the `datasets` loader's layout)."""
    data = json.loads((DATA / "en/squad/validation.json").read_text(encoding="utf-8"))["data"]
    rows = [
        {"id": q["id"], "question": q["question"], "context": p["context"], "answers": {
            "text": [a["text"] for a in q["answers"]], "answer_start": [a["answer_start"] for a in q["answers"]]}}
        for article in data for p in article["paragraphs"] for q in p["qas"]
    ][:n]  # fmt: skip
    path = d / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def chats(d: Path, n: int) -> Path:
    rows = [json.loads(line) for line in (DATA / "en/dolly/train.jsonl").read_text().splitlines()[:n]]
    path = d / "chat.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": r["instruction"]},
                        {"role": "assistant", "content": r["response"]},
                    ]
                }
            )
            + "\n"
            for r in rows
        ),
        encoding="utf-8",
    )
    return path


def recipe_of(family: str, d: Path, request) -> tuple[str | dict, dict]:
    """A shipped recipe (or a dict) and the overrides that train it for two steps on a few real rows."""
    tsv = lambda src, n: str(head(DATA / src, d / Path(src).name, n))  # noqa: E731
    if family == "sst2":
        return "sst2-minilm", {"data.train": tsv("en/sst2/train.tsv", 16), "data.validation": tsv("en/sst2/dev.tsv", 8)}
    if family == "pairs":
        return "sick-nli-minilm", {
            "data.train": tsv("en/sick/train.tsv", 16),
            "data.validation": tsv("en/sick/dev.tsv", 8),
        }
    if family == "regression":
        return "stsb-minilm", {"data.train": tsv("en/stsb/train.tsv", 16), "data.validation": tsv("en/stsb/dev.tsv", 8)}
    if family == "multi-label":
        return "goemotions-minilm", {
            "data.train": str(head(DATA / "en/goemotions/train.tsv", d / "t.tsv", 16, header=False)),
            "data.validation": str(head(DATA / "en/goemotions/dev.tsv", d / "v.tsv", 8, header=False)),
        }
    if family == "documents":
        return "imdb-minilm", {"data.train": tsv("en/imdb/train.csv", 8), "data.validation": tsv("en/imdb/dev.csv", 4)}
    if family == "ner":
        train_rows = head(SHARED / "en/conll2003/train.txt", d / "train.txt", 120, header=False)
        return "conll2003-minilm", {"data.train": str(train_rows), "data.validation": str(train_rows)}
    if family == "qa":
        return "squad-minilm", {"data.train": str(squad_rows(d, 16)), "data.validation": str(squad_rows(d, 16))}
    if family == "multiple-choice":
        jl = lambda src, n: str(head(DATA / src, d / Path(src).name, n, header=False))  # noqa: E731
        return "paraphrase-mc-minilm", {
            "data.train": jl("en/paraphrase_mc/train.jsonl", 8),
            "data.validation": jl("en/paraphrase_mc/dev.jsonl", 4),
        }
    if family == "lora":
        return "sst2-minilm", {
            "data.train": tsv("en/sst2/train.tsv", 16),
            "data.validation": tsv("en/sst2/dev.tsv", 8),
            "peft": {"r": 4, "merge": False},
        }
    text = str(head(DATA / "en/gutenberg/austen_emma.txt", d / "emma.txt", 60, header=False))
    if family == "fill-mask":
        return "mlm-domain-en", {"data.train": text, "max_length": 32}
    gpt2 = str(request.getfixturevalue("gpt2_fixture"))
    if family == "generation":
        return "clm-gpt2", {"model": gpt2, "data.train": text, "max_length": 32}
    jl = lambda src, n: str(head(DATA / src, d / Path(src).name, n, header=False))  # noqa: E731
    if family == "completion":
        dolly = {"data.train": jl("en/dolly/train.jsonl", 8), "data.validation": jl("en/dolly/dev.jsonl", 4)}
        return "sft-gpt2-dolly", {"model": gpt2, "max_length": 64, **dolly}
    if family == "chat":
        recipe = {"task": "causal-lm", "model": gpt2, "data": {"train": str(chats(d, 8)), "shape": "chat"}}
        return recipe, {"max_length": 64}
    if family == "seq2seq":
        bart = str(request.getfixturevalue("bart_fixture"))
        dialog = {
            "data.train": jl("en/dialogsum/validation.jsonl", 8),
            "data.validation": jl("en/dialogsum/test_head100.jsonl", 4),
        }
        return "summarize-bart", {"model": bart, "max_length": 64, "max_target_length": 16, **dialog}
    raise AssertionError(family)


FAMILIES = ["sst2", "pairs", "regression", "multi-label", "documents", "ner", "qa", "multiple-choice", "lora",
            "fill-mask", "generation", "completion", "chat", "seq2seq"]  # fmt: skip


# text classification and NER by default (about a minute each on 2 busy cores); the other families by make test-slow
FAST = ("sst2", "ner")


@pytest.mark.parametrize("family", [f if f in FAST else pytest.param(f, marks=pytest.mark.slow) for f in FAMILIES])
def test_every_card_snippet_runs_from_another_directory(family, tmp_path, request):
    recipe, overrides = recipe_of(family, tmp_path, request)
    if isinstance(recipe, str):
        recipe = ROOT / "recipes" / f"{recipe}.yaml"
    training = {f"training.{k}": v for k, v in QUICK.items()}
    out = train(recipe, overrides={**training, **overrides}, output_dir=tmp_path / "runs" / "model").output_dir
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    printed = run_card(out, elsewhere)
    assert printed.strip().startswith(("[", "{")), printed
    print(family, printed[:300])
