"""hftk/report/texts.py through the task adapters: a language model's perplexity by document recomputed from the model
itself, a seq2seq model's ROUGE per example recomputed with rouge-score, each shown example at its file:line."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from hftk import evaluate, load_recipe, train
from hftk.models.loading import load_tokenizer
from hftk.report.labels import SHOWN_EXAMPLES
from hftk.tasks import get_task
from hftk.testing.fixtures import JA_TEXT_DIR

from ..helpers import DATA, QUICK, ROOT, head


def report_of(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text(encoding="utf-8"))


def section(report: dict, title: str) -> dict:
    return next(s for s in report["sections"] if s["title"] == title)


def line_of(where: str) -> int:
    return int(where.rsplit(":", 1)[1])


# ------------------------------------------------------------------------------------------ language models


def test_causal_lm_perplexity_by_document_equals_the_model_on_the_packed_stream(gpt2_fixture, tmp_path):
    """Every document's perplexity as GPT-2 itself gives it, read block by block over the documents joined with
    <|endoftext|>: the separator counts for the document it ends, a block's first token for none."""
    import torch
    from transformers import GPT2LMHeadModel

    lines = (DATA / "en/gutenberg/austen_emma.txt").read_text(encoding="utf-8").splitlines()[3:40]
    data = tmp_path / "held.txt"
    data.write_text("\n".join([*lines[:6], "", *lines[6:]]) + "\n", encoding="utf-8")  # a blank line: no document
    folder = tmp_path / "rep"
    metrics = evaluate(
        gpt2_fixture, data, task="causal-lm", recipe_overrides={"max_length": 64, "precision": "fp32"}, report=folder
    )

    tok = load_tokenizer(str(gpt2_fixture))
    model = GPT2LMHeadModel.from_pretrained(gpt2_fixture).eval()
    numbered = [(n, text) for n, text in enumerate(data.read_text().splitlines(), 1) if text.strip()]
    stream, owner = [], []
    for d, (_, text) in enumerate(numbered):
        ids = tok(text, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if d < len(numbered) - 1 else [])
        stream += ids
        owner += [d] * len(ids)
    nll, scored = np.zeros(len(numbered)), np.zeros(len(numbered), dtype=int)
    with torch.no_grad():
        for start in range(0, len(stream), 64):
            ids = torch.tensor([stream[start : start + 64]])
            logp = model(ids).logits.log_softmax(-1)[0].double()
            for t in range(1, ids.shape[1]):
                nll[owner[start + t]] -= float(logp[t - 1, ids[0, t]])
                scored[owner[start + t]] += 1
    expected = np.exp(nll / scored)
    tokens = np.bincount(owner)

    report = report_of(folder)
    doc = section(report, "Perplexity by document")
    assert report["metrics"] == metrics and doc["values"]["perplexity (all tokens)"] == metrics["perplexity"]
    assert metrics["perplexity"] == pytest.approx(math.exp(nll.sum() / scored.sum()), rel=1e-4)
    assert doc["values"]["tokens scored"] == scored.sum() == len(stream) - math.ceil(len(stream) / 64)
    assert doc["values"]["documents"] == doc["values"]["documents scored"] == len(numbered)
    assert doc["values"]["median document perplexity"] == pytest.approx(np.median(expected), rel=1e-4)
    table = doc["tables"][0]
    assert table["rows"][-1] == ["all", len(numbered), scored.sum(), metrics["perplexity"]]
    assert sum(row[1] for row in table["rows"][:-1]) == len(numbered)
    assert sum(row[2] for row in table["rows"][:-1]) == scored.sum()

    shown = section(report, "Highest perplexity")["examples"]
    by_line = {n: d for d, (n, _) in enumerate(numbered)}
    worst = np.argsort(-expected)[:SHOWN_EXAMPLES]
    assert [by_line[line_of(e["where"])] for e in shown] == list(worst)
    for example in shown:
        d = by_line[line_of(example["where"])]
        assert example["where"] == f"{data}:{numbered[d][0]}"
        assert numbered[d][1].startswith(example["fields"]["text"].removesuffix("…").rstrip())
        assert example["fields"]["tokens"] == tokens[d] and example["fields"]["tokens scored"] == scored[d]
        assert example["fields"]["perplexity"] == pytest.approx(expected[d], rel=1e-4)
    assert (folder / "figures/perplexity.svg").is_file() and "Highest perplexity" in (
        folder / "report.html"
    ).read_text()


def test_masked_lm_documents_account_for_every_masked_token(ja_fixture, tmp_path):
    """Masked LM (seeded masks): every masked token belongs to a document ([CLS] and [SEP] are never masked), each
    document's tokens are its own and its separator's, and the overall perplexity is the task's score."""
    texts = [t for t in (JA_TEXT_DIR / "wagahai_wa_neko_de_aru.txt").read_text(encoding="utf-8").splitlines() if t]
    texts = texts[:14]
    data = tmp_path / "neko.txt"
    data.write_text("\n".join(texts) + "\n", encoding="utf-8")
    folder = tmp_path / "rep"
    metrics = evaluate(ja_fixture, data, task="masked-lm", recipe_overrides={"max_length": 32}, report=folder)

    tok = load_tokenizer(str(ja_fixture))
    lengths = [len(ids) + 1 for ids in tok(texts, add_special_tokens=False)["input_ids"]]
    lengths[-1] -= 1  # no separator after the last document
    report = report_of(folder)
    doc = section(report, "Perplexity by document")
    assert doc["values"]["perplexity (all tokens)"] == metrics["perplexity"]
    shown = section(report, "Highest perplexity")["examples"]
    assert len(shown) == doc["values"]["documents scored"] and doc["values"]["documents"] == len(texts)
    assert sum(e["fields"]["tokens scored"] for e in shown) == doc["values"]["tokens scored"]
    assert [e["fields"]["perplexity"] for e in shown] == sorted(
        (e["fields"]["perplexity"] for e in shown), reverse=True
    )
    for example in shown:
        d = line_of(example["where"]) - 1
        assert texts[d].startswith(example["fields"]["text"].removesuffix("…")) and len(example["fields"]["text"]) < 302
        assert example["fields"]["tokens"] == lengths[d]
        assert 0 < example["fields"]["tokens scored"] <= lengths[d]
    assert "15% of tokens chosen for masking" in doc["note"]


# -------------------------------------------------------------------------------------------------- seq2seq


def test_seq2seq_rouge_per_example_equals_rouge_score(bart_fixture, tmp_path):
    """Predictions of known overlap (the reference, its first half, unrelated words), in feature order shuffled as
    training sorts them: each example's ROUGE is rouge-score's, their means are the task's score."""
    from rouge_score import rouge_scorer

    data = head(DATA / "en/dialogsum/test_head100.jsonl", tmp_path / "dev.jsonl", 12, header=False)
    recipe = load_recipe(
        {"task": "seq2seq", "model": str(bart_fixture), "data": {"columns": {"text": "document", "target": "summary"}}}
    )
    tok = load_tokenizer(str(bart_fixture))
    task = get_task("seq2seq")(recipe, tok)
    records = task.read(data).whole()
    references = [row["summary"] for row in records.rows]
    predictions = [
        [ref, " ".join(ref.split()[: len(ref.split()) // 2]), "Nothing here is alike at all."][i % 3]
        for i, ref in enumerate(references)
    ]
    features = task.encode(records, with_targets=True)
    order = np.random.default_rng(0).permutation(len(records))
    features = {k: [v[i] for i in order] for k, v in features.items()}
    outputs = [np.asarray(tok(predictions[i])["input_ids"]) for i in order]
    metrics = task.score(records, features, outputs)
    folder = tmp_path / "rep"
    task.evaluation_report(records, features, outputs, metrics, "m").write(folder)

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    expected = [scorer.score(ref, pred) for ref, pred in zip(references, predictions)]
    report = report_of(folder)
    spread = section(report, "ROUGE per example")
    for name in ("rouge1", "rouge2", "rougeL"):
        assert spread["values"][name] == metrics[name]
        assert metrics[name] == pytest.approx(np.mean([e[name].fmeasure for e in expected]), abs=1e-12)
    assert spread["tables"][0]["rows"][2][:2] == ["rougeL", metrics["rougeL"]]
    assert spread["tables"][0]["rows"][2][5] == sum(e["rougeL"].fmeasure == 0 for e in expected)
    shown = section(report, "Lowest rougeL")["examples"]
    assert len(shown) == len(records)
    assert [e["fields"]["rougeL"] for e in shown] == sorted(e["rougeL"].fmeasure for e in expected)
    lines = data.read_text(encoding="utf-8").splitlines()
    for example in shown:
        i = line_of(example["where"]) - 1
        row = json.loads(lines[i])
        assert example["fields"]["reference"] == row["summary"] and example["fields"]["predicted"] == predictions[i]
        assert row["document"].startswith(example["fields"]["text"].removesuffix("…").rstrip())
        for name in ("rouge1", "rouge2", "rougeL"):
            assert example["fields"][name] == pytest.approx(expected[i][name].fmeasure, abs=1e-12)
    by_length = section(report, "By input length")
    assert sum(row[1] for row in by_length["tables"][0]["rows"]) == len(records)


def test_seq2seq_training_writes_the_report_and_its_table_into_the_card(bart_fixture, tmp_path):
    train_file = head(DATA / "en/dialogsum/validation.jsonl", tmp_path / "train.jsonl", 8, header=False)
    dev = head(DATA / "en/dialogsum/test_head100.jsonl", tmp_path / "dev.jsonl", 4, header=False)
    overrides = {
        "model": str(bart_fixture),
        "data.train": str(train_file),
        "data.validation": str(dev),
        "max_length": 64,
        "max_target_length": 16,
        "generation": {"max_new_tokens": 4},
        "training": QUICK,
    }
    result = train(ROOT / "recipes/summarize-bart.yaml", overrides=overrides, output_dir=tmp_path / "run")
    report = report_of(result.output_dir / "report")
    assert section(report, "ROUGE per example")["values"]["rougeL"] == result.metrics["eval"]["eval_rougeL"]
    shown = section(report, "Lowest rougeL")["examples"]
    assert sorted(e["where"] for e in shown) == [f"{dev}:{n}" for n in range(1, 5)]
    assert [e["fields"]["rougeL"] for e in shown] == sorted(e["fields"]["rougeL"] for e in shown)
    card = (result.output_dir / "README.md").read_text(encoding="utf-8")
    assert "**ROUGE F1 per example**" in card and "| metric | mean | 10th percentile |" in card
