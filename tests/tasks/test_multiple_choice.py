"""Multiple choice on real rows: both ways of naming choices, features of shape [choices, tokens] and the truncation
rule, located errors; the real MiniLM learning the derived English set; JCommonsenseQA end to end on the Tohoku
fixture through the command line (train, predict, evaluate) and plain `AutoModelForMultipleChoice`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hftk import HftkError, Predictor, load_recipe, train
from hftk.data.readers import read_records
from hftk.models.loading import load_tokenizer
from hftk.tasks import get_task

from ..helpers import DATA, MINILM, ROOT, cli, head

EN = DATA / "en/paraphrase_mc"
JCQA = DATA / "ja/jcommonsenseqa"
JCQA_CHOICES = [f"choice{i}" for i in range(5)]


def make(tokenizer, **fields):
    recipe = load_recipe({"task": "multiple-choice", "model": MINILM, "data": {}, **fields})
    return get_task("multiple-choice")(recipe, tokenizer)


def write(path, rows: list[dict]):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_choices_from_columns_or_one_list_column(tok, tmp_path):
    jcqa = make(tok, choices=JCQA_CHOICES)
    records = jcqa.read(JCQA / "valid-v1.3.json")  # JSON Lines with a .json suffix, as JGLUE ships it
    assert len(records) == 1119 and jcqa.choices(records)[0] == [records.rows[0][c] for c in JCQA_CHOICES]
    summary = jcqa.summary(records)
    assert summary["choices per row"] == 5 and sum(summary["gold index"].values()) == 1119
    listed = make(tok)  # default: a `choices` column holding a list (SWAG-style)
    records = listed.read(EN / "dev.jsonl")
    assert listed.choices(records)[0] == records.rows[0]["choices"]
    assert listed.targets(records)[:3] == [r["label"] for r in records.rows[:3]]


def test_features_are_choices_by_tokens_and_the_question_is_cut_first(tok, tmp_path):
    question = " ".join(["word"] * 60)
    path = write(tmp_path / "long.jsonl", [{"question": question, "choices": ["a cat", "a big dog"], "label": "1"}])
    task = make(tok, max_length=16)
    records = task.read(path)
    features = task.encode(records, with_targets=True)
    assert features["labels"] == [1]  # integer text, as CSV/TSV cells hold it, is an index too
    ids = features["input_ids"][0]
    assert len(ids) == 2 and all(len(x) == 16 for x in ids)  # [choices, tokens], each pair cut to max_length
    for seq, choice in zip(ids, ["a cat", "a big dog"]):
        sep = seq.index(tok.sep_token_id)
        assert tok.decode(seq[sep + 1 : -1]) == choice  # every choice whole: the question lost the tokens
    assert task.lengths(records) == [len(tok(question, "a big dog")["input_ids"])]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"question": "q", "choices": ["a", "b", "c"], "label": 3}, "label 3 is out of range: 3 choices"),
        ({"question": "q", "choices": ["a", "b"], "label": -1}, "label -1 is out of range"),
        ({"question": "q", "choices": ["a", "b"], "label": "b"}, "label 'b' is not a choice index"),
        ({"question": "q", "choices": ["a", " "], "label": 0}, "choice 1 is empty; fill it or drop the row"),
        ({"question": "q", "choices": "a|b", "label": 0}, "column 'choices' must hold a list of choices"),
        ({"question": "q", "choices": ["a"], "label": 0}, "1 choice; a row needs at least two"),
    ],
)
def test_bad_rows_are_located(tok, tmp_path, row, message):
    task = make(tok)
    path = write(tmp_path / "x.jsonl", [row])
    with pytest.raises(HftkError) as e:
        task.targets(task.read(path))
    assert str(e.value).startswith(f"{path}:1: {message}") and "\n" not in str(e.value)


def test_ragged_choices_and_missing_columns_are_located(tok, tmp_path):
    rows = [{"question": "q", "choices": ["a", "b", "c"], "label": 0}] * 1500 + [
        {"question": "q", "choices": ["a", "b"], "label": 0}
    ]
    path = write(tmp_path / "r.jsonl", rows)
    # Checked over the whole file when it is read, not per batch of 1,000 rows that the encoders see.
    with pytest.raises(HftkError, match=r"r\.jsonl:1501: 2 choices, but .*r\.jsonl:1 has 3; give every row"):
        make(tok).read(path)
    jcqa = tmp_path / "j.jsonl"
    jcqa.write_text((JCQA / "valid-v1.3.json").read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    with pytest.raises(HftkError, match=r"j\.jsonl: no column 'choice5', which choices: names .*fix choices:"):
        make(tok, choices=[*JCQA_CHOICES, "choice5"]).read(jcqa)
    with pytest.raises(HftkError, match=r"j\.jsonl: no column 'choices' holding the choices .*choices: \[choice0"):
        make(tok).read(jcqa)
    with pytest.raises(HftkError, match="choices: column 'choice1' is listed twice"):
        load_recipe({"task": "multiple-choice", "model": MINILM, "data": {}, "choices": ["choice1", "choice1"]})


def test_scores_and_answers(tok, tmp_path):
    task = make(tok, choices=JCQA_CHOICES)
    records = task.read(JCQA / "valid-v1.3.json")
    logits = [np.array([0.0, 2.0, 0.0, 0.0, 0.0]), np.array([1.0, 0.0, 0.0, 0.0, 3.0])]
    first = read_records(JCQA / "valid-v1.3.json")
    first.rows = first.rows[:2]
    out = task.postprocess(first, {}, logits)
    assert [o["index"] for o in out] == [1, 4] and out[1]["answer"] == records.rows[1]["choice4"]
    assert out[0]["scores"] == pytest.approx(list(np.exp(logits[0]) / np.exp(logits[0]).sum()))
    assert task.score(first, {"labels": [1, 0]}, logits) == {"accuracy": 0.5}


# ------------------------------------------------------------------------------------------------ trained


def test_minilm_learns_the_derived_english_set(tmp_path):
    """12 steps of 8 rows: dev accuracy far above chance (0.25) and above the untrained head."""
    result = train(
        ROOT / "recipes/paraphrase-mc-minilm.yaml",
        overrides={
            "data.train": str(head(EN / "train.jsonl", tmp_path / "train.jsonl", 96, header=False)),
            "data.validation": str(head(EN / "dev.jsonl", tmp_path / "dev.jsonl", 100, header=False)),
            "max_length": 48,
            "training.num_train_epochs": 1,
            "training.per_device_train_batch_size": 8,
            "training.learning_rate": 1e-4,
            "training.warmup_steps": 0,
            "training.eval_on_start": True,  # the untrained head, for comparison
        },
        output_dir=tmp_path / "mc",
    )
    before, after = result.metrics["eval_start"]["eval_accuracy"], result.metrics["eval"]["eval_accuracy"]
    assert after >= 0.6 and after > before + 0.2, (before, after)


def test_jcqa_recipe_end_to_end_on_the_japanese_fixture(ja_fixture, tmp_path, capsys):
    """recipes/jcqa-ja.yaml on the tiny Tohoku-format fixture through the command line: train, predict, evaluate;
    the folder loads with plain AutoModelForMultipleChoice and scores as hftk does."""
    import torch
    from transformers import AutoModelForMultipleChoice

    train_file = head(JCQA / "train-v1.3.json", tmp_path / "train.json", 64, header=False)
    dev_file = head(JCQA / "valid-v1.3.json", tmp_path / "dev.json", 24, header=False)
    out = tmp_path / "jcqa"
    cli(
        "train", ROOT / "recipes/jcqa-ja.yaml", "--output", out, "--set", f"model={ja_fixture}",
        "--set", f"data.train={train_file}", "--set", f"data.validation={dev_file}",
        "--set", "training.num_train_epochs=1", "--set", "training.warmup_steps=0",
    )  # fmt: skip
    assert 0.0 <= json.loads((out / "metrics.json").read_text())["eval"]["eval_accuracy"] <= 1.0

    cli("predict", out, "--input", dev_file, "--output", tmp_path / "answers.jsonl")
    answers = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = [json.loads(line) for line in dev_file.read_text(encoding="utf-8").splitlines()]
    assert len(answers) == len(rows) == 24
    for i, (a, row) in enumerate(zip(answers, rows)):
        assert a["line"] == i + 1 and a["question"] == row["question"]
        assert a["answer"] == row[f"choice{a['index']}"] and len(a["scores"]) == 5
        assert sum(a["scores"]) == pytest.approx(1.0) and a["scores"][a["index"]] == max(a["scores"])

    capsys.readouterr()
    cli("evaluate", out, "--data", dev_file, "--json")
    accuracy = json.loads(capsys.readouterr().out)["accuracy"]
    assert accuracy == pytest.approx(np.mean([a["index"] == r["label"] for a, r in zip(answers, rows)]))

    # No transformers pipeline has the task: the folder loads as a plain AutoModelForMultipleChoice.
    model = AutoModelForMultipleChoice.from_pretrained(out).eval()
    tokenizer = load_tokenizer(str(out))
    row = rows[0]
    choices = [row[c] for c in JCQA_CHOICES]
    batch = tokenizer([row["question"]] * 5, choices, truncation=True, max_length=64, padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**{k: v.unsqueeze(0) for k, v in batch.items()}).logits[0]
    assert torch.softmax(logits, -1).tolist() == pytest.approx(answers[0]["scores"], abs=2e-2)  # bf16 vs fp32
    assert Predictor(out, precision="fp32").predict(
        [{"question": row["question"], **dict(zip(JCQA_CHOICES, choices))}]
    )[0]["scores"] == pytest.approx(torch.softmax(logits, -1).tolist(), abs=1e-5)
    # The card's "Use" shows hftk's call with the recipe's columns (no pipeline() line that would fail).
    card = (out / "README.md").read_text(encoding="utf-8")
    use = card.split("## Use")[1]
    assert "print(hftk.Predictor(model).predict([{" in use and all(
        f"'{c}': " in use for c in ["question", *JCQA_CHOICES]
    )
    assert "pipeline(" not in card.split("## Use")[1]
