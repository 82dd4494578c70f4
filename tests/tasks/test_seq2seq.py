"""seq2seq (BART) on real DialogSum rows: training with generation and ROUGE, predict == pipeline, bad input."""

import json

import pytest

import hftk
from hftk import Predictor, evaluate, train

from ..helpers import DATA, ROOT, cli, head


@pytest.fixture(scope="module")
def summarizer(bart_fixture, tmp_path_factory):
    d = tmp_path_factory.mktemp("s2s")
    overrides = {
        "model": str(bart_fixture),
        "data.train": str(head(DATA / "en/dialogsum/validation.jsonl", d / "train.jsonl", 48, header=False)),
        "data.validation": str(head(DATA / "en/dialogsum/test_head100.jsonl", d / "dev.jsonl", 8, header=False)),
        "max_length": 128,
        "max_target_length": 48,
        "generation": {"max_new_tokens": 16},  # greedy: deterministic
        "training.num_train_epochs": 3,
        "training.learning_rate": 5e-3,
        "training.per_device_train_batch_size": 16,
    }
    return train(ROOT / "recipes/summarize-bart.yaml", overrides=overrides, output_dir=d / "run"), d


def test_seq2seq_trains_with_generation_and_rouge(summarizer):
    result, d = summarizer
    metrics = result.metrics["eval"]
    assert {"eval_rouge1", "eval_rouge2", "eval_rougeL", "eval_gen_len", "eval_loss"} <= set(metrics)
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("eval_rouge1", "eval_rouge2", "eval_rougeL"))
    assert result.metrics["train"]["train_loss"] < 10
    generation = json.loads((result.output_dir / "generation_config.json").read_text())
    assert generation["max_new_tokens"] == 16 and generation.get("num_beams", 1) == 1 and "max_length" not in generation
    # hftk evaluate on the validation file generates the same way and scores the same.
    again = evaluate(result.output_dir, d / "dev.jsonl")
    assert again["rougeL"] == pytest.approx(metrics["eval_rougeL"], abs=1e-6)


def test_summarization_pipeline_agrees_with_hftk_predict(summarizer, tmp_path):
    result, d = summarizer
    out = tmp_path / "summaries.jsonl"
    cli("predict", str(result.output_dir), "--input", str(d / "dev.jsonl"), "--output", str(out))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    documents = [json.loads(line)["document"] for line in (d / "dev.jsonl").read_text().splitlines()]
    assert [r["document"] for r in rows] == documents and all("summary_text" in r for r in rows)
    # transformers 5 removed pipeline("summarization"); hftk.pipeline provides it for seq2seq model directories.
    pipe = hftk.pipeline("summarization", model=str(result.output_dir), device="cpu")
    # One document at a time there, length-sorted padded batches in hftk predict: the same text.
    assert [pipe(doc)[0]["summary_text"] for doc in documents] == [r["summary_text"] for r in rows]
    predicted = Predictor(result.output_dir).predict(documents[:2])
    assert predicted == [{"summary_text": r["summary_text"]} for r in rows[:2]]
    # The translation pipeline name gives the same model's text under that pipeline's key.
    translated = tmp_path / "translations.jsonl"
    cli("predict", str(result.output_dir), "--task", "translation", "--input", d / "dev.jsonl", "--output", translated)
    rows_t = [json.loads(line) for line in translated.read_text().splitlines()]
    assert [r["translation_text"] for r in rows_t] == [r["summary_text"] for r in rows]
    pipe_t = hftk.pipeline("translation", model=str(result.output_dir), device="cpu")
    assert pipe_t(documents[0])[0]["translation_text"] == rows[0]["summary_text"]
