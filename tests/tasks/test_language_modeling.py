"""masked-lm and causal-lm end to end on real text: perplexity drops on held-out text, the output directories load
in transformers pipelines and agree with `hftk predict`, an adapted model fine-tunes as a classifier."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from hftk import HftkError, Predictor, evaluate, load_recipe, train
from hftk.models.loading import DevicePolicy
from hftk.tasks import get_task
from hftk.training.prepare import training_arguments

from ..helpers import DATA, MINILM, ROOT, assert_resume_is_bit_exact, cli, cli_error, head, sst2_recipe


def lines_of(src: Path, dst: Path, start: int, n: int) -> Path:
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    dst.write_text("".join(lines[start : start + n]), encoding="utf-8")
    return dst


def assert_perplexity_dropped(metrics: dict) -> tuple[float, float]:
    before, after = metrics["eval_start"]["eval_perplexity"], metrics["eval"]["eval_perplexity"]
    assert math.isfinite(before) and math.isfinite(after)
    assert metrics["eval_start"]["step"] == 0
    assert after < before, (before, after)
    return before, after


# ------------------------------------------------------------------------------------------------ recipes


def test_recipe_checks_masking_validation_and_generation():
    base = {"task": "masked-lm", "model": MINILM, "data": {"train": "x.txt"}}
    r = load_recipe(base)
    assert (r.mlm_probability, r.mask_replace_prob, r.random_replace_prob, r.whole_word_mask) == (0.15, 0.8, 0.1, False)
    cpu = DevicePolicy("cpu", "fp32")
    args = training_arguments(get_task("masked-lm")(r, None), cpu, "unused", has_eval=False)
    assert args.remove_unused_columns is False and args.eval_on_start is False
    held = load_recipe({**base, "data": {"train": "x.txt", "validation_fraction": 0.1}})
    assert training_arguments(get_task("masked-lm")(held, None), cpu, "unused", has_eval=True).eval_on_start
    with pytest.raises(HftkError, match="mask_replace_prob \\+ random_replace_prob is more than 1"):
        load_recipe({**base, "mask_replace_prob": 0.95})
    with pytest.raises(HftkError, match="data: validation and validation_fraction both set"):
        load_recipe({**base, "data": {"train": "x.txt", "validation": "y.txt", "validation_fraction": 0.1}})
    clm = {"task": "causal-lm", "model": "gpt2", "data": {"train": "x.txt"}}
    with pytest.raises(HftkError, match="generation: temperature only apply when sampling; add do_sample: true"):
        load_recipe({**clm, "generation": {"temperature": 0.7}})
    assert load_recipe({**clm, "generation": {"do_sample": True, "top_p": 0.9}}).generation.top_p == 0.9


# ------------------------------------------------------------------------------------------------ masked LM


@pytest.fixture(scope="module")
def adapted_en(tmp_path_factory):
    """MiniLM adapted (whole-word masking) on 60 real paragraphs of Emma; 10 % held out."""
    d = tmp_path_factory.mktemp("mlm-en")
    overrides = {
        "data.train": str(lines_of(DATA / "en/gutenberg/austen_emma.txt", d / "emma.txt", 3, 60)),
        "data.validation_fraction": 0.1,
        "max_length": 64,
        "training.per_device_train_batch_size": 16,
        "training.warmup_steps": 0,
        "training.learning_rate": 2e-4,
    }
    return train(ROOT / "recipes/mlm-domain-en.yaml", overrides=overrides, output_dir=d / "run")


def test_mlm_perplexity_drops_on_held_out_text(adapted_en):
    out = adapted_en.output_dir
    assert_perplexity_dropped(adapted_en.metrics)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["eval"]["eval_perplexity"] == pytest.approx(math.exp(saved["eval"]["eval_loss"]))
    assert "pipeline_tag: fill-mask" in (out / "README.md").read_text()
    # The same model scored by hftk evaluate (its own seeded masks) on the held-out paragraphs: lower than before.
    held = out.parent / "held.txt"
    recipe = load_recipe(out / "recipe.yaml")
    from hftk.data.text import held_out, read_texts

    _, dev = held_out(read_texts(recipe.data.train, column="text"), 0.1, recipe.seed)
    held.write_text("".join(r["text"] + "\n" for r in dev.rows))
    metrics = evaluate(out, held)
    assert set(metrics) == {"loss", "perplexity"}
    assert metrics["perplexity"] < adapted_en.metrics["eval_start"]["eval_perplexity"]


def test_fill_mask_pipeline_agrees_with_hftk_predict(adapted_en, tmp_path):
    from transformers import pipeline

    out = adapted_en.output_dir
    texts = ["Emma was very [MASK] of her father.", "Mr. Knightley, a [MASK] man, called [MASK] evening."]
    inputs = tmp_path / "in.txt"
    inputs.write_text("\n".join(texts) + "\n")
    out_file = tmp_path / "p.jsonl"
    cli("predict", out, "--input", inputs, "--output", out_file, "--top-k", 3, "--precision", "fp32")  # as pipeline
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    expected = pipeline("fill-mask", model=str(out), device="cpu")(texts, top_k=3)
    assert [r["text"] for r in rows] == texts
    one, two = rows[0]["predictions"], rows[1]["predictions"]
    assert len(one) == 3 and len(two) == 2 and all(len(m) == 3 for m in two)  # a list per mask when several
    for got, want in zip([one, *two], [expected[0], *expected[1]]):
        assert [g["token_str"] for g in got] == [w["token_str"] for w in want]
        assert [g["sequence"] for g in got] == [w["sequence"] for w in want]
        assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=1e-5)


def test_fill_mask_input_without_mask_names_the_line(adapted_en, tmp_path, capsys):
    inputs = tmp_path / "in.txt"
    inputs.write_text("A [MASK] here.\nNo mask on this line.\n")
    out = str(adapted_en.output_dir)
    msg = cli_error(capsys, "predict", out, "--input", str(inputs), "--output", str(tmp_path / "o.jsonl"))
    assert f"{inputs}:2: no [MASK] in the first 64 tokens" in msg


def test_classifier_fine_tunes_from_the_adapted_model(adapted_en, tmp_path):
    from transformers import pipeline

    paths = {
        "train": head(DATA / "en/sst2/train.tsv", tmp_path / "train.tsv", 128),
        "validation": head(DATA / "en/sst2/dev.tsv", tmp_path / "dev.tsv", 64),
    }
    recipe = sst2_recipe(paths, tmp_path / "clf", model=str(adapted_en.output_dir), max_length=32)
    result = train(recipe)
    assert "eval_accuracy" in result.metrics["eval"]
    # The classifier starts from the adapted encoder, not the original MiniLM, and serves as any other.
    from safetensors.numpy import load_file

    key = "bert.embeddings.position_embeddings.weight"  # rows past max_length 32 untouched by the classifier
    adapted = load_file(adapted_en.output_dir / "model.safetensors")[key]
    classifier = load_file(result.output_dir / "model.safetensors")[key]
    assert np.abs(classifier - adapted).mean() < np.abs(classifier - original_position_embeddings()).mean()
    texts = [line.rsplit("\t", 1)[0] for line in paths["validation"].read_text().splitlines()[1:9]]
    want = pipeline("text-classification", model=str(result.output_dir), device="cpu")(texts)
    assert [p["label"] for p in Predictor(result.output_dir).predict(texts)] == [w["label"] for w in want]


def original_position_embeddings():
    from safetensors.numpy import load_file

    from hftk.models.loading import resolve_model

    weights = load_file(Path(resolve_model(MINILM)) / "model.safetensors")
    return next(v for k, v in weights.items() if k.endswith("embeddings.position_embeddings.weight"))


def test_masked_lm_resume_is_bit_exact(tmp_path, own_cache):
    """As classification's resume: 4 steps straight (a checkpoint at step 2, mid-epoch) vs a run resumed from
    that checkpoint. The resumed run draws the same masks and dropout, so its losses and weights are the same
    bit for bit."""
    overrides = {
        "data.train": str(lines_of(DATA / "en/gutenberg/austen_emma.txt", tmp_path / "emma.txt", 3, 80)),
        "data.validation_fraction": None,
        "max_length": 64,
        "training.per_device_train_batch_size": 8,
    }
    assert_resume_is_bit_exact(ROOT / "recipes/mlm-domain-en.yaml", overrides, tmp_path)


def test_japanese_mlm_with_mecab_whole_words_on_the_fixture(ja_fixture, tmp_path):
    """The Japanese recipe on the Tohoku-format fixture: medical reports, whole-word masking over MeCab words."""
    from transformers import pipeline

    import hftk

    text = lines_of(DATA / "ja/medical/medical_casereports_radiology_jmedllm.txt", tmp_path / "med.txt", 0, 40)
    overrides = {
        "model": str(ja_fixture),
        "data.train": str(text),
        "max_length": 128,
        "training.num_train_epochs": 1,
        "training.learning_rate": 3e-3,
        "training.warmup_steps": 0,
    }
    result = train(ROOT / "recipes/mlm-domain-ja.yaml", overrides=overrides, output_dir=tmp_path / "run")
    assert_perplexity_dropped(result.metrics)
    out = result.output_dir
    texts = ["患者は[MASK]歳の男性。", "胸部CTで右肺に[MASK]を認めた。"]
    # transformers' pipeline with the slow BertJapaneseTokenizer (the Tohoku format on disk) ...
    slow = pipeline("fill-mask", model=str(out), device="cpu")(texts, top_k=5)
    # ... hftk's pipeline and Predictor with the fast MeCab tokenizer: the same candidates.
    fast = hftk.pipeline("fill-mask", model=str(out), device="cpu")(texts, top_k=5)
    got = Predictor(out).predict(texts, top_k=5)
    for s, f, g in zip(slow, fast, got):
        assert [x["token"] for x in s] == [x["token"] for x in f]
        # Predictor's batched forward may swap candidates whose scores tie within float noise (a barely trained model)
        expected = {x["token"]: x["score"] for x in s}
        assert [x["score"] for x in g["predictions"]] == pytest.approx([x["score"] for x in s], abs=1e-5)
        assert all(expected.get(x["token"], -1) == pytest.approx(x["score"], abs=1e-5) for x in g["predictions"])


# ------------------------------------------------------------------------------------------------ causal LM


def test_causal_lm_gpt2_end_to_end(gpt2_fixture, tmp_path):
    from transformers import pipeline

    text = lines_of(DATA / "en/gutenberg/austen_emma.txt", tmp_path / "emma.txt", 3, 200)
    overrides = {
        "model": str(gpt2_fixture),
        "data.train": str(text),
        "data.validation_fraction": 0.1,
        "max_length": 128,
        "generation": {"max_new_tokens": 12},  # greedy: deterministic
        "training.num_train_epochs": 1,
        "training.learning_rate": 3e-3,
        "training.per_device_train_batch_size": 16,
    }
    result = train(ROOT / "recipes/clm-gpt2.yaml", overrides=overrides, output_dir=tmp_path / "run")
    assert_perplexity_dropped(result.metrics)
    out = result.output_dir
    # Training evaluates by loss alone, keeping no per-token outputs: no report (`hftk evaluate --report` gives it).
    assert not (out / "report").exists()
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["max_new_tokens"] == 12 and not generation.get("do_sample")

    # Prompts of different lengths: hftk predict batches them, padded on the left.
    prompts = ["Emma Woodhouse, handsome, clever, and rich,", "Mr. Knightley", "It was a very pleasant evening, and"]
    inputs = tmp_path / "prompts.txt"
    inputs.write_text("\n".join(prompts) + "\n")
    cli("predict", str(out), "--input", str(inputs), "--output", str(tmp_path / "gen.jsonl"))
    rows = [json.loads(line) for line in (tmp_path / "gen.jsonl").read_text().splitlines()]
    pipe = pipeline("text-generation", model=str(out), device="cpu")
    expected = [pipe(p)[0]["generated_text"] for p in prompts]
    assert [r["generated_text"] for r in rows] == expected
    assert all(r["generated_text"].startswith(p) and len(r["generated_text"]) > len(p) for r, p in zip(rows, prompts))

    # A checkpoint hftk did not train, named by its pipeline task: the plain fixture, as the pipeline decodes it.
    cli("predict", gpt2_fixture, "--task", "text-generation", "--set", "generation.max_new_tokens=6",
        "--input", inputs, "--output", tmp_path / "plain.jsonl")  # fmt: skip
    plain = [json.loads(line)["generated_text"] for line in (tmp_path / "plain.jsonl").read_text().splitlines()]
    base = pipeline("text-generation", model=str(gpt2_fixture), device="cpu")
    assert plain == [base(p, max_new_tokens=6, do_sample=False)[0]["generated_text"] for p in prompts]

    # Perplexity through hftk evaluate equals Trainer's on the same held-out blocks (no masking: deterministic).
    recipe = load_recipe(out / "recipe.yaml")
    from hftk.data.text import held_out, read_texts

    _, dev = held_out(read_texts(recipe.data.train, column="text"), 0.1, recipe.seed)
    held = tmp_path / "held.txt"
    held.write_text("".join(r["text"] + "\n" for r in dev.rows))
    assert evaluate(out, held)["perplexity"] == pytest.approx(result.metrics["eval"]["eval_perplexity"], rel=1e-3)


# ------------------------------------------------------------------------------------------------ instruction tuning


def test_instruction_recipe_fields_fit_the_data_shape():
    clm = {"task": "causal-lm", "model": "gpt2", "data": {"train": "x.jsonl", "shape": "completion"}}
    r = load_recipe({**clm, "prompt_template": "{prompt}\n\n{context}\n\nAnswer:"})
    assert r.data.shape == "completion" and r.train_on_prompt is False
    args = training_arguments(get_task("causal-lm")(r, None), DevicePolicy("cpu", "fp32"), "unused", has_eval=True)
    assert args.train_sampling_strategy == "group_by_length" and args.eval_on_start  # not packed: padded by length
    with pytest.raises(
        HftkError, match=re.escape("prompt_template: has no {prompt}: every row's instruction would be dropped")
    ):
        load_recipe({**clm, "prompt_template": "{context}\nAnswer:"})
    with pytest.raises(
        HftkError, match=re.escape("prompt_template: names {completion}: the answer would be in the prompt")
    ):
        load_recipe({**clm, "prompt_template": "{prompt} {completion}"})
    text = {**clm, "data": {"train": "x.txt"}}
    with pytest.raises(HftkError, match=re.escape("prompt_template applies to data.shape: completion")):
        load_recipe({**text, "prompt_template": "{prompt}"})
    with pytest.raises(HftkError, match=re.escape("chat_template applies to data.shape: chat")):
        load_recipe({**clm, "chat_template": "{{ messages }}"})
    with pytest.raises(HftkError, match=re.escape("train_on_prompt applies to instruction data")):
        load_recipe({**text, "train_on_prompt": True})


def test_generation_eval_answers_a_seeded_sample_in_file_order():
    from hftk.data.records import Records

    records = Records("dev.jsonl", [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(40)], list(range(1, 41)))
    clm = {"task": "causal-lm", "model": "gpt2", "data": {"train": "x.jsonl", "shape": "completion"}}

    def sample(**fields) -> list[str]:
        task = get_task("causal-lm")(load_recipe({**clm, **fields}), None)
        return [task.generation_sample(records).where(i) for i in range(len(task.generation_sample(records)))]

    first = sample(generation_eval={"samples": 5})
    assert len(first) == 5 and first == sample(generation_eval={"samples": 5})  # the same rows each run
    assert first == sorted(first, key=lambda w: int(w.rsplit(":", 1)[1]))  # in file order
    assert first != sample(generation_eval={"samples": 5}, seed=7)  # drawn with the recipe's seed
    assert len(sample()) == 32 and len(sample(generation_eval={"samples": 100})) == 40
    assert sample(generation_eval={"samples": 0}) == []
    with pytest.raises(HftkError, match=re.escape("generation_eval: applies to instruction data")):
        load_recipe({**clm, "data": {"train": "x.txt"}, "generation_eval": {"samples": 4}})


def dolly_rows(name: str, n: int, tok, limit: int) -> list[dict]:
    """The first n Dolly rows whose prompt and answer fit in `limit` tokens of the fixture's tokenizer."""
    rows = [json.loads(line) for line in (DATA / f"en/dolly/{name}.jsonl").read_text().splitlines()]
    text = (r["instruction"] + r["context"] + r["response"] for r in rows)
    return [r for r, t in zip(rows, text) if len(tok(t)["input_ids"]) < limit - 40][:n]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_check_counts_the_dolly_answers_max_length_cuts(gpt2_fixture):
    from transformers import AutoTokenizer

    from hftk import check

    tok = AutoTokenizer.from_pretrained(gpt2_fixture)
    report = check(ROOT / "recipes/sft-gpt2-dolly.yaml", {"model": str(gpt2_fixture), "max_length": 128})
    for split, name in (("train", "train"), ("validation", "dev")):
        rows = [json.loads(line) for line in (DATA / f"en/dolly/{name}.jsonl").read_text().splitlines()]
        # An answer is cut when it and its EOS leave no room for a token of prompt.
        cut = sum(len(tok(r["response"])["input_ids"]) + 1 >= 128 for r in rows)
        assert 0 < cut < len(rows)
        assert report[split]["answers cut"] == f"{cut} of {len(rows)} examples lose part of their answer"
        assert any(w.endswith(f"{cut} of {len(rows)} examples ({cut / len(rows):.1%}) have answers longer than "
                              "max_length 128 allows and lose their end (and EOS); raise max_length to keep them")
                   for w in report["warnings"])  # fmt: skip


def test_sft_on_dolly_scores_and_answers_the_response_only(gpt2_fixture, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    from hftk.features.instructions import render_prompt

    tok = AutoTokenizer.from_pretrained(gpt2_fixture)
    train_file = write_jsonl(tmp_path / "train.jsonl", dolly_rows("train", 32, tok, 128))
    dev = dolly_rows("dev", 6, tok, 128)
    dev_file = write_jsonl(tmp_path / "dev.jsonl", dev)
    overrides = {
        "model": str(gpt2_fixture),
        "data.train": str(train_file),
        "data.validation": str(dev_file),
        "max_length": 128,
        "generation": {"max_new_tokens": 8},
        "training.num_train_epochs": 1,
        "training.learning_rate": 3e-3,
    }
    result = train(ROOT / "recipes/sft-gpt2-dolly.yaml", overrides=overrides, output_dir=tmp_path / "run")
    assert_perplexity_dropped(result.metrics)
    out = result.output_dir
    recipe = load_recipe(out / "recipe.yaml")

    # hftk evaluate's loss is the mean over the dev answers' tokens (and EOS), nothing else: computed here
    # example by example from the tokenizer and the model alone.
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    nll, count = 0.0, 0
    for row in dev:
        prompt = render_prompt(recipe.prompt_template, {"prompt": row["instruction"], "context": row["context"]})
        p, a = tok(prompt)["input_ids"], tok(row["response"])["input_ids"] + [tok.eos_token_id]
        with torch.no_grad():
            loss = model(torch.tensor([p + a]), labels=torch.tensor([[-100] * len(p) + a])).loss
        nll, count = nll + float(loss) * len(a), count + len(a)
    metrics = evaluate(out, dev_file)
    assert metrics["loss"] == pytest.approx(nll / count, rel=1e-4)

    # hftk predict gives the answer alone, as the pipeline with return_full_text=False.
    cli("predict", str(out), "--input", str(dev_file), "--output", str(tmp_path / "answers.jsonl"))
    answers = [json.loads(line)["generated_text"] for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    pipe = pipeline("text-generation", model=str(out), device="cpu")
    prompts = [
        render_prompt(recipe.prompt_template, {"prompt": r["instruction"], "context": r["context"]}) for r in dev
    ]
    assert answers == [pipe(p, return_full_text=False)[0]["generated_text"] for p in prompts]
    assert all(a and not a.startswith("### Instruction") for a in answers)

    # Generation evaluation after training and in hftk evaluate: generation_eval.samples (32) is more than the 6
    # dev rows, so it answers them all, as the pipeline did; each score worked out here from those answers.
    from rouge_score import rouge_scorer

    from hftk.tasks.metrics import chrf

    refs = [r["response"] for r in dev]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge_l = [scorer.score(r, a)["rougeL"].fmeasure for a, r in zip(answers, refs)]
    new_ids = [model.generate(**tok(p, return_tensors="pt"))[0, len(tok(p)["input_ids"]) :] for p in prompts]
    expected = {
        "rougeL": sum(rouge_l) / 6,
        "exact_match": sum(a.split() == r.split() for a, r in zip(answers, refs)) / 6,
        "chrf": sum(chrf(a, r) for a, r in zip(answers, refs)) / 6,
        "stopped": sum(tok.eos_token_id in ids.tolist() for ids in new_ids) / 6,
        "generated": 6,
    }
    assert {k: result.metrics["eval"][f"eval_{k}"] for k in expected} == pytest.approx(expected)
    metrics = evaluate(out, dev_file, report=tmp_path / "report")
    assert {k: metrics[k] for k in expected} == pytest.approx(expected)
    for page in (out / "report", tmp_path / "report"):
        sections = {s["title"]: s for s in json.loads((page / "report.json").read_text())["sections"]}
        worst = sections["Lowest rougeL"]["examples"]
        assert [e["fields"]["rougeL"] for e in worst] == sorted(rouge_l)
        assert {e["fields"]["predicted"] for e in worst} == set(answers) and "reference" in worst[0]["fields"]
        assert "prompt" in worst[0]["fields"] and worst[0]["where"].startswith(str(dev_file))


def test_sft_on_chats_saves_the_chat_template_the_pipeline_uses(gpt2_fixture, tmp_path):
    from transformers import AutoTokenizer, pipeline

    from hftk.features.instructions import DEFAULT_CHAT_TEMPLATE

    tok = AutoTokenizer.from_pretrained(gpt2_fixture)
    assert tok.chat_template is None  # GPT-2 has none: hftk's default is used and saved

    def chat(r: dict) -> dict:
        return {
            "messages": [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["response"]}]
        }

    train_file = write_jsonl(tmp_path / "train.jsonl", [chat(r) for r in dolly_rows("train", 32, tok, 128)])
    dev = [chat(r) for r in dolly_rows("dev", 6, tok, 128)]
    dev_file = write_jsonl(tmp_path / "dev.jsonl", dev)
    recipe = {
        "task": "causal-lm",
        "model": str(gpt2_fixture),
        "data": {"train": str(train_file), "validation": str(dev_file), "shape": "chat"},
        "max_length": 128,
        "generation": {"max_new_tokens": 8},
        "training": {"num_train_epochs": 1, "learning_rate": 3e-3, "per_device_train_batch_size": 8},
    }
    result = train(recipe, output_dir=tmp_path / "run")
    assert_perplexity_dropped(result.metrics)
    out = result.output_dir
    assert AutoTokenizer.from_pretrained(out).chat_template == DEFAULT_CHAT_TEMPLATE

    # A labelled file: each chat's reference answer is left out and the model answers the user turn before it.
    cli("predict", str(out), "--input", str(dev_file), "--output", str(tmp_path / "answers.jsonl"))
    answers = [json.loads(line)["generated_text"] for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    pipe = pipeline("text-generation", model=str(out), device="cpu")
    assert answers == [pipe(c["messages"][:1], return_full_text=False)[0]["generated_text"] for c in dev]


def test_sft_resume_is_bit_exact_in_length_grouped_batches(gpt2_fixture, tmp_path, own_cache):
    """Instruction data is batched by length (Trainer's seeded sampler), padded per batch: a resumed run draws the
    same batches as the run it continues."""
    from transformers import AutoTokenizer

    rows = dolly_rows("train", 24, AutoTokenizer.from_pretrained(gpt2_fixture), 128)
    overrides = {
        "model": str(gpt2_fixture),
        "data.train": str(write_jsonl(tmp_path / "train.jsonl", rows)),
        "data.validation": None,
        "max_length": 128,
        "training.per_device_train_batch_size": 4,
    }
    assert_resume_is_bit_exact(ROOT / "recipes/sft-gpt2-dolly.yaml", overrides, tmp_path)


def test_the_japanese_dolly_recipe_checks_and_trains_offline_on_the_rinna_layout_fixture(gpt2_ja_fixture, tmp_path):
    """recipes/sft-gpt2-dolly-ja.yaml names rinna/japanese-gpt2-small (sentencepiece, T5Tokenizer): its same-layout
    fixture stands in, as `hftk fixture gpt2-japanese DIR` writes it."""
    from transformers import AutoTokenizer

    from hftk import check, predict

    recipe = ROOT / "recipes/sft-gpt2-dolly-ja.yaml"
    report = check(recipe, {"model": str(gpt2_ja_fixture)})
    assert report["train"]["rows"] == 200 and report["validation"]["rows"] == 50
    assert report["train"]["tokens"]["max"] > 0 and not any("not available" in w for w in report["warnings"])
    rows = [json.loads(line) for line in (DATA / "ja/dolly_ja/train.jsonl").read_text(encoding="utf-8").splitlines()]
    short = [r for r in rows if len(r["instruction"] + r["context"] + r["response"]) < 120]
    overrides = {
        "model": str(gpt2_ja_fixture),
        "data.train": str(write_jsonl(tmp_path / "train.jsonl", short[:16])),
        "data.validation": str(write_jsonl(tmp_path / "dev.jsonl", short[16:20])),
        "max_length": 128,
        "generation": {"max_new_tokens": 4},
        "training.max_steps": 4,
        "training.per_device_train_batch_size": 4,
        "training.learning_rate": 3e-3,
    }
    result = train(recipe, overrides=overrides, output_dir=tmp_path / "run")
    assert_perplexity_dropped(result.metrics)
    saved = AutoTokenizer.from_pretrained(result.output_dir)
    assert type(saved).__name__ == "T5Tokenizer" and saved.eos_token == "</s>"
    predict(result.output_dir, tmp_path / "dev.jsonl", tmp_path / "answers.jsonl")
    answers = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(answers) == 4 and all(set(a) >= {"line", "generated_text"} for a in answers)
