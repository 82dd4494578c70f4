"""hftk/tasks/documents.py: long documents (`long_inputs:`) on real IMDb reviews and livedoor articles: which windows
are kept, head_tail's exact tokens, windows that cover a document, pooled answers in training, evaluation,
prediction and embeddings, and what `hftk check` says."""

from __future__ import annotations

import csv
import itertools
import json

import numpy as np
import pytest

import hftk
from hftk.data.records import Records
from hftk.tasks import get_task, load_recipe
from hftk.tasks.documents import kept_windows, per_document, pool

from ..helpers import MINILM, ROOT
from ..helpers import hftk as run_hftk

IMDB = ROOT / "data/en/imdb"


def imdb(split: str, n: int) -> list[dict[str, str]]:
    with open(IMDB / f"{split}.csv", newline="", encoding="utf-8") as f:
        return [row for _, row in zip(range(n), csv.DictReader(f))]


# A short run of the IMDb recipe reading windows of 64 tokens (16 shared, at most 3 a review), no checkpoints.
SHORT_WINDOWED = {
    "max_length": 64,
    "long_inputs": "windows",
    "windows.stride": 16,
    "windows.max_windows": 3,
    "training.eval_strategy": "no",
    "training.save_strategy": "no",
    "training.load_best_model_at_end": False,
}


def write_reviews(path, n: int):
    """The first `n` dev reviews as a CSV of their own."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["review", "label"])
        writer.writeheader()
        writer.writerows(imdb("dev", n))
    return path


def task_of(tok, **fields):
    recipe = {
        "task": "text-classification",
        "model": MINILM,
        "data": {"train": str(IMDB / "train.csv"), "columns": {"text": "review"}},
        "labels": ["neg", "pos"],
        "max_length": 64,
        **fields,
    }
    return get_task("text-classification")(load_recipe(recipe), tok)


def records_of(rows: list[dict[str, str]]) -> Records:
    return Records("imdb.csv", rows, list(range(2, len(rows) + 2)), ["review", "label"])


def test_kept_windows_are_all_or_evenly_apart_with_the_first_and_last():
    example = [0] * 10 + [1, 1] + [2]
    assert kept_windows(example, 4) == [0, 3, 6, 9, 10, 11, 12]
    assert kept_windows(example, 10) == list(range(13))
    assert kept_windows(example, 1) == [0, 10, 12]  # one window: the first
    assert kept_windows([0] * 7, 3) == [0, 3, 6]


def test_head_tail_keeps_the_first_and_last_tokens_of_one_tokenisation(tok):
    task = task_of(tok, long_inputs="head_tail", head_tokens=20)
    rows = imdb("train", 40)
    features = task.encode(records_of(rows), with_targets=True)
    cut = 0
    for row, ids, types in zip(rows, features["input_ids"], features["token_type_ids"]):
        whole = tok(row["review"])["input_ids"]
        if len(whole) <= 64:
            assert ids == whole  # a review that fits is read as transformers reads it
            continue
        cut += 1
        assert len(ids) == 64 and types == [0] * 64
        assert ids[:21] == whole[:21] and ids[21:] == whole[-43:]  # [CLS] + 20 first, 42 last + [SEP]
    assert cut > 30
    # a pair: the first text is cut, the second kept whole after it, with its own token type
    pair = task_of(tok, long_inputs="head_tail", head_tokens=10, data={"train": "x.csv", "columns": {"text": "review"}})
    texts, second = [rows[0]["review"]], ["Was it any good?"]
    got = pair.encode(Records("x", [{"review": texts[0], "text_pair": second[0]}], None, ["review", "text_pair"]),
                      with_targets=False)  # fmt: skip
    ids, types = got["input_ids"][0], got["token_type_ids"][0]
    tail = tok(second[0], add_special_tokens=False)["input_ids"]
    assert len(ids) == 64 and ids[-len(tail) - 1 : -1] == tail and types[-len(tail) - 1 :] == [1] * (len(tail) + 1)
    assert ids[:11] == tok(texts[0])["input_ids"][:11]


def test_head_tail_of_a_model_without_token_types_or_special_tokens(gpt2_fixture):
    """GPT-2 (the real class, a tokenizer trained on real text) adds no special tokens and takes no token types."""
    from hftk.models.loading import load_tokenizer

    gpt2 = load_tokenizer(str(gpt2_fixture))
    task = task_of(gpt2, model=str(gpt2_fixture), head_tokens=10)  # head_tail: text classification's default
    rows = imdb("train", 5)
    features = task.encode(records_of(rows), with_targets=True)
    assert set(features) == {"input_ids", "attention_mask", "labels"}
    for row, ids in zip(rows, features["input_ids"]):
        whole = gpt2(row["review"])["input_ids"]
        assert ids == (whole if len(whole) <= 64 else whole[:10] + whole[-54:])


def test_windows_cover_a_review_share_the_stride_and_carry_its_label(tok):
    task = task_of(tok, long_inputs="windows", windows={"stride": 16, "max_windows": 50})
    rows = imdb("train", 12)
    features = task.encode(records_of(rows), with_targets=True)
    assert sorted(set(features["example"])) == list(range(len(rows)))
    for i, row in enumerate(rows):
        mine = [f for f, e in enumerate(features["example"]) if e == i]
        assert {features["labels"][f] for f in mine} == {task.value_to_id[row["label"]]}
        content = [features["input_ids"][f][1:-1] for f in mine]  # without [CLS] ... [SEP]
        for a, b in itertools.pairwise(content):
            assert a[-16:] == b[:16]  # consecutive windows share the stride
        rebuilt = content[0] + [t for c in content[1:] for t in c[16:]]
        assert rebuilt == tok(row["review"], add_special_tokens=False)["input_ids"]  # every token, once, in order


def test_pooling_is_one_row_per_document_mean_or_max():
    features = {"example": [0, 0, 1, 2, 2, 2]}
    outputs = [np.array(v, dtype=float) for v in ([1, 0], [3, 2], [5, 5], [0, 1], [2, 0], [1, 8])]
    assert pool(features, outputs, "mean").tolist() == [[2, 1], [5, 5], [1, 3]]
    assert pool(features, outputs, "max").tolist() == [[3, 2], [5, 5], [2, 8]]
    weighted = pool(features, outputs, "mean", weights=[1, 3, 1, 1, 1, 2])
    assert weighted.tolist()[0] == [2.5, 1.5]
    assert per_document({"example": [0, 0, 1], "labels": [4, 4, 7]}, "labels") == [4, 7]
    assert pool({}, outputs[:2], "max").tolist() == [[1, 0], [3, 2]]  # no windows: one feature per document


def test_multi_label_thresholds_apply_to_each_documents_pooled_scores(tok):
    """A multi-label document's labels are those whose pooled score reaches the threshold, not any window's."""
    genres = ["action", "comedy", "drama"]
    windowed = {"long_inputs": "windows", "windows": {"stride": 16}}
    task = task_of(tok, labels=genres, problem_type="multi_label", threshold=0.6, **windowed)
    features = {"example": [0, 0, 1, 1, 1]}
    outputs = [np.array(v) for v in ([2.0, -2.0, 0], [0, 2.0, 0], [-3.0, 0.1, 3.0], [3.0, 0.1, 3.0], [0, 0.1, -3.0])]
    rows = task.postprocess(None, features, outputs, windows=True)
    # document 0: mean logits [1, 0, 0], scores [.73, .5, .5]; its second window alone would say comedy (.88)
    assert [r["labels"] for r in rows] == [["action"], ["drama"]]
    assert rows[0]["windows"][1]["labels"] == ["comedy"]
    assert rows[1]["scores"][0] == {"label": "drama", "score": pytest.approx(1 / (1 + np.exp(-1.0)))}
    # tuned thresholds are learnt on the pooled scores: gold drama for document 1 only puts drama's cut between
    # the documents' pooled drama scores (.5 and .73), which no window's score (.05 to .95) would
    splits = {"train": str(IMDB / "train.csv"), "validation": str(IMDB / "dev.csv"), "columns": {"text": "review"}}
    task = task_of(tok, labels=genres, problem_type="multi_label", threshold="tuned", data=splits, **windowed)
    gold = [[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0], [0, 0, 1.0], [0, 0, 1.0]]
    task.tune(None, {**features, "labels": gold}, outputs)
    assert 0.5 < task.thresholds[2] <= 1 / (1 + np.exp(-1.0))
    first, second = (set(r["labels"]) for r in task.postprocess(None, features, outputs))
    assert "drama" not in first and "drama" in second


@pytest.fixture(scope="module")
def windowed_model(tmp_path_factory):
    """MiniLM trained briefly on IMDb reviews read in windows of 64 tokens, mean-pooled."""
    folder = tmp_path_factory.mktemp("imdb")
    dev = write_reviews(folder / "dev.csv", 40)  # a short validation split
    overrides = {**SHORT_WINDOWED, "data.validation": str(dev), "training.max_steps": 6}
    hftk.train(ROOT / "recipes/imdb-minilm.yaml", overrides=overrides, output_dir=folder / "model")
    return folder / "model"


def test_a_windowed_model_answers_once_per_document_from_its_pooled_windows(windowed_model, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rows = imdb("dev", 24)
    predictor = hftk.Predictor(windowed_model)
    answers = predictor.predict([r["review"] for r in rows])
    assert len(answers) == len(rows)
    # Independently: the saved model on each kept window, logits averaged per review.
    model = AutoModelForSequenceClassification.from_pretrained(windowed_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(windowed_model)
    for row, answer in zip(rows[:6], answers):
        enc = tokenizer(row["review"], truncation=True, max_length=64, stride=16, return_overflowing_tokens=True,
                        padding=True, return_tensors="pt")  # fmt: skip
        keep = kept_windows([0] * len(enc["input_ids"]), 3)
        with torch.no_grad():
            logits = model(**{k: enc[k][keep] for k in ("input_ids", "attention_mask", "token_type_ids")}).logits
        probs = torch.softmax(logits.mean(0), -1)
        assert answer["label"] == model.config.id2label[int(probs.argmax())]
        assert answer["score"] == pytest.approx(float(probs.max()), abs=1e-4)
    # evaluate scores reviews, not windows: its accuracy is the share of right answers above
    dev = imdb("dev", 80)
    metrics = hftk.evaluate(windowed_model, write_reviews(tmp_path / "dev.csv", 80))
    right = [a["label"] == r["label"] for a, r in zip(predictor.predict([r["review"] for r in dev]), dev)]
    assert metrics["accuracy"] == pytest.approx(sum(right) / len(right))
    # hftk predict writes one row per input line; the card says how plain transformers reads the folder
    path = tmp_path / "in.txt"
    path.write_text("".join(r["review"].replace("\n", " ") + "\n" for r in rows[:5]))
    out = tmp_path / "p.jsonl"
    proc = run_hftk("predict", str(windowed_model), "--input", str(path), "--output", str(out), "--windows")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [x["line"] for x in lines] == [1, 2, 3, 4, 5]
    for line, answer in zip(lines, answers):  # --windows: each window's answer beside the document's
        assert line["label"] == answer["label"] and 1 <= len(line["windows"]) <= 3
        assert {"label", "score"} <= set(line["windows"][0])
    # hftk.pipeline reads windows as the recipe says, with transformers' call and answer shapes; transformers'
    # own pipeline still loads the folder (and truncates)
    import transformers

    ours = hftk.pipeline("text-classification", model=str(windowed_model))
    theirs = transformers.pipeline("text-classification", model=str(windowed_model))
    long_review = rows[0]["review"]
    assert ours(long_review) == [{"label": answers[0]["label"], "score": pytest.approx(answers[0]["score"])}]
    short = "A fine film."

    def flat(answer):  # [(label, score)] of a dict or a list of them
        return [(d["label"], round(d["score"], 4)) for d in (answer if isinstance(answer[0], dict) else answer[0])]

    for call in ({}, {"top_k": 2}):  # a short text is one window: the same answer as transformers', same shape
        mine, plain = ours(short, **call), theirs(short, **call)
        assert type(mine[0]) is type(plain[0]) and flat(mine) == flat(plain)
    assert [type(x) for x in ours([short, long_review])] == [dict, dict]
    card = (windowed_model / "README.md").read_text()
    assert "## Long inputs" in card and "plain `transformers.pipeline` cuts every input at 64 tokens" in card


def test_classification_reads_head_and_tail_unless_a_folder_was_trained_before_or_by_others(windowed_model, tmp_path):
    """head_tail is text classification's default (embeddings' stays truncate); a folder whose recipe.yaml predates
    long_inputs was trained truncating, and a checkpoint hftk did not train is read as transformers reads it."""
    import shutil

    import transformers
    import yaml

    assert load_recipe({"task": "text-classification", "model": MINILM, "data": {}}).long_inputs == "head_tail"
    assert load_recipe({"task": "feature-extraction", "model": MINILM, "data": {}}).long_inputs == "truncate"
    old, plain = tmp_path / "old", tmp_path / "plain"
    shutil.copytree(windowed_model, old)
    saved = yaml.safe_load((old / "recipe.yaml").read_text())
    for key in ("long_inputs", "windows", "head_tokens"):
        del saved[key]
    (old / "recipe.yaml").write_text(yaml.safe_dump(saved))
    shutil.copytree(windowed_model, plain, ignore=shutil.ignore_patterns("recipe.yaml"))
    assert hftk.Predictor(windowed_model).task.recipe.long_inputs == "windows"
    review = imdb("dev", 1)[0]["review"]
    pipe = transformers.pipeline("text-classification", model=str(windowed_model))
    # the old folder at its recipe's max_length; the plain checkpoint at the model's own, as transformers reads it
    for folder, task, window in ((old, None, 64), (plain, "text-classification", None)):
        predictor = hftk.Predictor(folder, task=task)
        assert predictor.task.recipe.long_inputs == "truncate"
        (answer,) = predictor.predict([review])
        theirs = pipe(review, truncation=True, **({"max_length": window} if window else {}))[0]
        assert (answer["label"], answer["score"]) == (theirs["label"], pytest.approx(theirs["score"], abs=1e-4))


def test_check_says_how_many_reviews_exceed_the_window_and_how_they_are_read(tmp_path):
    proc = run_hftk("check", str(ROOT / "recipes/imdb-minilm.yaml"), "--set", "long_inputs=windows")
    assert proc.returncode == 0, proc.stderr
    assert "longer than the window: 931 of 1000 inputs (93.1%): read in windows, median 4 and max 4" in proc.stdout
    assert "warning" not in proc.stdout  # windows are the recipe's choice, not a problem
    proc = run_hftk("check", str(ROOT / "recipes/imdb-minilm.yaml"))  # the recipe's own: head_tail
    assert "931 of 1000 inputs (93.1%): their first 31 and last tokens are read (head_tail)" in proc.stdout
    proc = run_hftk("check", str(ROOT / "recipes/imdb-minilm.yaml"), "--set", "long_inputs=truncate")
    assert "931 of 1000 inputs (93.1%) are longer than max_length 128 tokens and will be truncated" in proc.stdout


def test_embeddings_of_a_long_document_are_its_windows_weighted_by_tokens(tmp_path):
    rows = imdb("dev", 8)
    texts = [r["review"] for r in rows]
    windowed = hftk.Predictor(MINILM, task="feature-extraction", long_inputs="windows", max_length=64,
                              **{"windows.stride": 8, "windows.max_windows": 100})  # fmt: skip
    features = windowed.task.encode(windowed.records(texts), with_targets=False)
    per_window = windowed.run(features)
    vectors = np.asarray([v["embedding"] for v in windowed.predict(texts)])
    for i in range(len(texts)):
        mine = [f for f, e in enumerate(features["example"]) if e == i]
        tokens = np.asarray([sum(features["attention_mask"][f]) for f in mine], dtype=float)
        expected = (np.stack([per_window[f] for f in mine]) * tokens[:, None]).sum(0) / tokens.sum()
        expected /= np.linalg.norm(expected)  # all-MiniLM-L6-v2 normalises its vectors
        np.testing.assert_allclose(vectors[i], expected, atol=1e-5)
    # a short text is one window: the same vector as without windows
    plain = hftk.Predictor(MINILM, task="feature-extraction", max_length=64)
    short = ["A short and sweet film."]
    np.testing.assert_allclose(windowed.predict(short)[0]["embedding"], plain.predict(short)[0]["embedding"], atol=1e-6)


def test_japanese_articles_are_windowed_at_exact_token_boundaries(ja_fixture):
    from hftk.models.loading import load_tokenizer

    tok = load_tokenizer(str(ja_fixture))
    recipe = load_recipe(
        {
            "task": "text-classification",
            "model": str(ja_fixture),
            "data": {"train": str(ROOT / "data/ja/livedoor/train.csv")},
            "max_length": 128,
            "long_inputs": "windows",
            "windows": {"stride": 32, "max_windows": 100},
        }
    )
    task = get_task("text-classification")(recipe, tok)
    with open(ROOT / "data/ja/livedoor/dev.csv", newline="", encoding="utf-8") as f:
        rows = [row for _, row in zip(range(4), csv.DictReader(f))]
    task.fit(Records("dev.csv", rows, None, ["text", "label", "url", "date"]))
    features = task.encode(Records("dev.csv", rows, None, ["text", "label", "url", "date"]), with_targets=True)
    for i, row in enumerate(rows):
        content = [features["input_ids"][f][1:-1] for f, e in enumerate(features["example"]) if e == i]
        assert len(content) > 1  # whole articles are longer than one window of 128
        rebuilt = content[0] + [t for c in content[1:] for t in c[32:]]
        assert rebuilt == tok(row["text"], add_special_tokens=False)["input_ids"]


def test_the_exported_model_reads_windows_as_the_folder_does(windowed_model, tmp_path):
    rows = imdb("dev", 12)
    texts = [r["review"] for r in rows]
    proc = run_hftk("export", str(windowed_model), "--output", str(tmp_path / "onnx"))
    assert proc.returncode == 0, proc.stderr
    original = hftk.Predictor(windowed_model).predict(texts, windows=True)
    exported = hftk.Predictor(tmp_path / "onnx").predict(texts, windows=True)
    assert [a["label"] for a in exported] == [a["label"] for a in original]
    assert [len(a["windows"]) for a in exported] == [len(a["windows"]) for a in original]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(exported, original)) < 1e-4


def test_a_streamed_split_is_windowed_and_evaluated_per_document(tmp_path):
    reviews = str(write_reviews(tmp_path / "reviews.csv", 30))
    overrides = {**SHORT_WINDOWED, "data.train": reviews, "data.validation": reviews, "data.streaming": True}
    overrides["training.max_steps"] = 2
    result = hftk.train(ROOT / "recipes/imdb-minilm.yaml", overrides=overrides, output_dir=tmp_path / "out")
    rows = imdb("dev", 30)
    answers = hftk.Predictor(tmp_path / "out").predict([r["review"] for r in rows])
    right = sum(a["label"] == r["label"] for a, r in zip(answers, rows))
    assert result.metrics["eval"]["eval_accuracy"] == pytest.approx(right / 30)  # 30 reviews, not their windows
