"""The QA and multiple-choice reports (hftk/report/answers.py through their task adapters), on real SQuAD and
paraphrase rows with planted model outputs: each bucket's numbers equal the official metric on that bucket's
questions, answers no window holds are counted as the training labels see them, and every example shown points at
its own line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hftk import load_recipe
from hftk.report.answers import length_bucket, question_word
from hftk.tasks import get_task, metrics

from ..helpers import DATA, MINILM, QUICK


def make(tok, name, **fields):
    return get_task(name)(load_recipe({"task": name, "model": MINILM, "data": {}, **fields}), tok)


def squad_rows(n: int) -> list[dict]:
    """The first n SQuAD dev questions as flat rows, each with its first gold answer only."""
    doc = json.loads((DATA / "en/squad/validation.json").read_text(encoding="utf-8"))
    rows = []
    for article in doc["data"]:
        for p in article["paragraphs"]:
            for q in p["qas"]:
                a = q["answers"][0]
                answers = {"text": [a["text"]], "answer_start": [a["answer_start"]]}
                rows.append({"id": q["id"], "question": q["question"], "context": p["context"], "answers": answers})
    return rows[:n]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("question", "word"),
    [
        ("In what year did the war end?", "what"),
        ("To whom was the letter sent?", "who"),
        ("Whose idea was it, and when?", "who"),
        ("How many people live there?", "how"),
        ("Name the capital of France.", "other"),
        ("日本で一番高い山は何ですか？", "何"),
        ("誰がいつ建てたか", "誰"),
        ("どうしてそうなったのか", "なぜ"),
        ("どのように作るか", "どの"),
        ("この町の人口はいくらか", "いくつ"),
        ("東京について述べよ", "other"),
    ],
)
def test_question_word(question, word):
    assert question_word(question) == word


def test_length_buckets():
    assert [length_bucket(n, "words") for n in (1, 2, 3, 4, 5, 6, 10, 11, 40)] == [
        "1", "2", "3", "4–5", "4–5", "6–10", "6–10", "11+", "11+"
    ]  # fmt: skip
    assert [length_bucket(n, "characters") for n in (1, 3, 9, 33)] == ["1–2", "3–4", "9–16", "33+"]
    assert length_bucket(None, "words") == "no answer"


def planted_qa(features, targets):
    """Start/end logits that pick the character span targets[record] in every window that holds it."""
    outs = []
    for f, (offsets, context) in enumerate(zip(features["offset_mapping"], features["context"])):
        s, e = targets[features["example"][f]]
        start, end = np.full(len(offsets), -5.0), np.full(len(offsets), -5.0)
        for k, ((a, b), c) in enumerate(zip(offsets, context)):
            start[k] += 10.0 * (c and a == s)
            end[k] += 10.0 * (c and b == e)
        outs.append((start, end))
    return outs


def test_qa_report_on_planted_answers(tok, tmp_path):
    rows = squad_rows(24)
    # One answer no window can hold: the first 500 characters of its context, far over a 64-token window.
    long = dict(rows[5], id="long", answers={"text": [rows[5]["context"][:500]], "answer_start": [0]})
    rows.append(long)
    data = write_jsonl(tmp_path / "dev.jsonl", rows)
    task = make(tok, "question-answering", max_length=64, doc_stride=16)
    records = task.read(data)
    features = task.encode(records, with_targets=True)
    gold = task.targets(records)
    # Even rows: the gold span; odd rows: the context's first word (mostly wrong).
    first_word = [(0, len(r["context"].split()[0])) for r in rows]
    outputs = planted_qa(features, [g if i % 2 == 0 else w for i, (g, w) in enumerate(zip(gold, first_word))])
    by_length, by_word, outside, worst = task.report(records, features, outputs)

    predicted = [p["answer"] for p in task.postprocess(records, features, outputs)]
    references = [r["answers"]["text"] for r in rows]
    overall = metrics.squad(predicted, references)
    assert overall == task.score(records, features, outputs)
    for section, key in [
        (by_length, lambda i: length_bucket(len(metrics.squad_normalize(references[i][0]).split()), "words")),
        (by_word, lambda i: question_word(rows[i]["question"])),
    ]:
        table = section.tables[0]
        assert sum(r[1] for r in table.rows) == len(rows)
        for name, n, em, f1 in table.rows:
            members = [i for i in range(len(rows)) if key(i) == name]
            want = metrics.squad([predicted[i] for i in members], [references[i] for i in members])
            assert (n, em, f1) == (len(members), pytest.approx(want["exact_match"]), pytest.approx(want["f1"]))

    # Outside every window: as training labels see it, every window of the question points at [CLS].
    unreachable = {
        i
        for i in range(len(rows))
        if all(s == 0 for s, e in zip(features["start_positions"], features["example"]) if e == i)
    }
    assert unreachable == {len(rows) - 1}
    assert outside.values == {"questions whose gold answer no window holds whole": 1}
    assert outside.examples[0].where == f"{data}:{len(rows)}: question id 'long'"

    lines = data.read_text(encoding="utf-8").splitlines()
    assert worst.examples and [ex.fields["f1"] for ex in worst.examples] == sorted(
        ex.fields["f1"] for ex in worst.examples
    )
    for ex in worst.examples:
        path, line = ex.where.split(":")[:2]
        row = json.loads(lines[int(line) - 1])
        assert (
            path == str(data) and row["question"] == ex.fields["question"] and f"question id {row['id']!r}" in ex.where
        )
        assert ex.fields["gold"] == row["answers"]["text"][0]
        assert "".join(t for t, m in ex.marked if m in ("gold", "both")) in row["answers"]["text"][0]
        assert "".join(t for t, m in ex.marked if m in ("predicted", "both")) in ex.fields["predicted"]


def test_multiple_choice_report_on_planted_scores(tok, tmp_path):
    rows = [json.loads(line) for line in (DATA / "en/paraphrase_mc/dev.jsonl").read_text().splitlines()[:40]]
    data = write_jsonl(tmp_path / "dev.jsonl", rows)
    task = make(tok, "multiple-choice")
    records = task.read(data)
    features = {"labels": task.targets(records)}
    rng = np.random.default_rng(0)
    outputs = [rng.normal(size=4).astype(np.float32) * 2 for _ in rows]
    by_choices, by_position, errors = task.report(records, features, outputs)

    probs = np.stack([np.exp(o) / np.exp(o).sum() for o in outputs])
    gold = np.asarray([r["label"] for r in rows])
    right = probs.argmax(1) == gold
    assert by_choices.tables[0].rows == [[4, 40, pytest.approx(right.mean()), 0.25]]
    assert task.score(records, features, outputs)["accuracy"] == pytest.approx(right.mean())
    for position, n_gold, n_pred, accuracy in by_position.tables[0].rows:
        assert n_gold == (gold == position).sum() and n_pred == (probs.argmax(1) == position).sum()
        assert accuracy == pytest.approx(right[gold == position].mean())

    assert len(errors.examples) == min(20, (~right).sum())
    scores = [ex.fields["score"] for ex in errors.examples]
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(probs.max(1)[~right].max())
    lines = data.read_text(encoding="utf-8").splitlines()
    for ex in errors.examples:
        path, line = ex.where.rsplit(":", 1)
        row = json.loads(lines[int(line) - 1])
        i = int(line) - 1
        assert path == str(data) and ex.fields["question"] == row["question"]
        assert ex.fields["gold"] == f"{row['label']}. {row['choices'][row['label']]}"
        assert ex.fields["predicted"] == f"{probs[i].argmax()}. {row['choices'][probs[i].argmax()]}"
        assert ex.fields["gold score"] == pytest.approx(probs[i][row["label"]])


def trained(recipe: dict, out, tmp_path):
    """A few steps of MiniLM on the recipe's data; then `hftk evaluate --report` on the validation file."""
    from hftk import train
    from hftk.cli import main

    recipe = {**recipe, "model": MINILM, "output_dir": str(out)}
    recipe["training"] = {**QUICK, "learning_rate": 1e-4, "warmup_steps": 0}
    result = train(recipe)
    report = tmp_path / "rep"
    assert main(["evaluate", str(out), "--data", recipe["data"]["validation"], "--report", str(report)]) == 0
    return result, json.loads((report / "report.json").read_text(encoding="utf-8"))


def test_trained_multiple_choice_card_and_evaluate_report(tmp_path):
    rows = [json.loads(line) for line in (DATA / "en/paraphrase_mc/dev.jsonl").read_text().splitlines()]
    train_file, dev = write_jsonl(tmp_path / "train.jsonl", rows[:8]), write_jsonl(tmp_path / "dev.jsonl", rows[16:32])
    recipe = {"task": "multiple-choice", "data": {"train": str(train_file), "validation": str(dev)}, "max_length": 32}
    result, report = trained(recipe, tmp_path / "mc", tmp_path)
    accuracy = result.metrics["eval"]["eval_accuracy"]
    headline = report["sections"][0]["tables"][0]
    assert headline["rows"] == [[4, 16, pytest.approx(accuracy), 0.25]]
    card = (tmp_path / "mc/README.md").read_text(encoding="utf-8")
    assert f"**{headline['caption']}**" in card and f"| 4 | 16 | {accuracy:.4f} | 0.2500 |" in card
    lines = dev.read_text(encoding="utf-8").splitlines()
    for ex in report["sections"][2]["examples"]:
        path, line = ex["where"].rsplit(":", 1)
        assert path == str(dev) and json.loads(lines[int(line) - 1])["question"] == ex["fields"]["question"]


def test_trained_question_answering_card_and_evaluate_report(tmp_path):
    rows = squad_rows(40)
    train_file, dev = write_jsonl(tmp_path / "train.jsonl", rows[:16]), write_jsonl(tmp_path / "dev.jsonl", rows[16:])
    recipe = {
        "task": "question-answering",
        "data": {"train": str(train_file), "validation": str(dev)},
        "max_length": 96,
        "doc_stride": 32,
    }
    result, report = trained(recipe, tmp_path / "qa", tmp_path)
    headline = report["sections"][0]["tables"][0]
    assert headline["head"] == ["gold answer (words)", "questions", "exact match", "f1"]
    # The buckets' questions add up, and their weighted means are the metrics of the whole file.
    total = sum(r[1] for r in headline["rows"])
    assert total == 24
    for k, name in ((2, "exact_match"), (3, "f1")):
        assert sum(r[1] * r[k] for r in headline["rows"]) / total == pytest.approx(
            result.metrics["eval"][f"eval_{name}"]
        )
    card = (tmp_path / "qa/README.md").read_text(encoding="utf-8")
    assert f"**{headline['caption']}**" in card
    assert report["sections"][2]["values"] == {"questions whose gold answer no window holds whole": 0}
    lines = dev.read_text(encoding="utf-8").splitlines()
    worst = report["sections"][3]["examples"]
    assert worst
    for ex in worst:
        row = json.loads(lines[int(ex["where"].split(":")[1]) - 1])
        assert row["question"] == ex["fields"]["question"] and ex["fields"]["gold"] == row["answers"]["text"][0]
        marks = {m for _, m in ex["marked"]}
        assert "gold" in marks or "both" in marks
