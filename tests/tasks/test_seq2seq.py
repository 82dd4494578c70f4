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


DOLLY_TEMPLATE = "### Instruction:\n{prompt}\n\n### Context:\n{context}\n\n### Response:\n"


def test_instruction_rows_take_the_causal_lm_recipe_shape_and_the_template_is_the_encoder_input(bart_fixture, tmp_path):
    """recipes/sft-gpt2-dolly.yaml's data and prompt_template with task: seq2seq: the rendered prompt (the empty
    context paragraph left out) is what the encoder reads, the response what the decoder learns."""
    from transformers import AutoTokenizer

    from hftk.data.readers import read_records
    from hftk.tasks import get_task

    rows = [json.loads(line) for line in (DATA / "en/dolly/train.jsonl").read_text().splitlines()]
    picked = [
        next(r for r in rows if r["context"] and len(r["context"]) < 600),
        next(r for r in rows if not r["context"]),
    ]
    picked += [r for r in rows if len(r["instruction"] + r["context"] + r["response"]) < 400][:14]
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in picked))
    dev_file = tmp_path / "dev.jsonl"
    dev_file.write_text("".join(json.dumps(r) + "\n" for r in picked[:4]))
    overrides = {
        "task": "seq2seq",
        "model": str(bart_fixture),
        "data.train": str(train_file),
        "data.validation": str(dev_file),
        "max_length": 256,
        "max_target_length": 64,
        "generation": {"max_new_tokens": 8},
        "training.max_steps": 2,
        "training.per_device_train_batch_size": 8,
    }
    recipe = hftk.load_recipe(ROOT / "recipes/sft-gpt2-dolly.yaml", overrides)
    task = get_task("seq2seq")(recipe, AutoTokenizer.from_pretrained(bart_fixture))
    feats = task.encode(read_records(train_file), with_targets=True)
    tok = task.tokenizer
    with_context, without = picked[0], picked[1]
    expected = [
        f"### Instruction:\n{with_context['instruction']}\n\n"
        f"### Context:\n{with_context['context']}\n\n### Response:\n",
        f"### Instruction:\n{without['instruction']}\n\n### Response:\n",
    ]
    for i, text in enumerate(expected):
        assert feats["input_ids"][i] == tok(text, truncation=True, max_length=256)["input_ids"]
        assert feats["labels"][i] == tok(text_target=picked[i]["response"], truncation=True, max_length=64)["input_ids"]
    result = train(ROOT / "recipes/sft-gpt2-dolly.yaml", overrides=overrides, output_dir=tmp_path / "run")
    assert "eval_rougeL" in result.metrics["eval"] and result.metrics["train"]["train_loss"] > 0
