"""Question answering on real SQuAD and JSQuAD rows: reading, windows and labels, decoding, metrics, bad input,
and trained models (a MiniLM that must find answers in later windows; the tiny Japanese fixture end to end)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hftk import HftkError, Predictor, load_recipe, train
from hftk.data.records import Records
from hftk.models.loading import load_tokenizer
from hftk.tasks import get_task

from ..helpers import DATA, MINILM, ROOT, assert_user_error, hftk

SQUAD_DEV = DATA / "en/squad/validation.json"
JSQUAD = DATA / "ja/jsquad/valid-v1.3.json"
JAQUAD = DATA / "ja/jaquad/train.json"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(MINILM)


def make(tokenizer, **fields):
    recipe = load_recipe({"task": "question-answering", "model": MINILM, "data": {}, **fields})
    return get_task("question-answering")(recipe, tokenizer)


@pytest.fixture(scope="module")
def squad_dev(tokenizer) -> Records:
    return make(tokenizer).read(SQUAD_DEV)


def subset(records: Records, indices) -> Records:
    rows = [records.rows[i] for i in indices]
    return Records(records.source, rows, None, records.columns)


def flat_rows(records: Records, indices) -> list[dict]:
    """Records as the flat layout of the `datasets` SQuAD loader: answers {text: [...], answer_start: [...]}."""
    out = []
    for i in indices:
        r = records.rows[i]
        answers = {"text": [a["text"] for a in r["answers"]], "answer_start": [a["answer_start"] for a in r["answers"]]}
        out.append({"id": r["id"], "question": r["question"], "context": r["context"], "answers": answers})
    return out


def nested(rows: list[dict], title: str = "t") -> dict:
    """Flat rows back into SQuAD's nested layout, one paragraph per distinct context."""
    paragraphs: dict[str, list] = {}
    for r in rows:
        answers = [{"text": t, "answer_start": s} for t, s in zip(r["answers"]["text"], r["answers"]["answer_start"])]
        paragraphs.setdefault(r["context"], []).append({"id": r["id"], "question": r["question"], "answers": answers})
    return {"data": [{"title": title, "paragraphs": [{"context": c, "qas": q} for c, q in paragraphs.items()]}]}


# ---------------------------------------------------------------------------------------------- reading


def test_nested_squad_is_one_record_per_question(squad_dev):
    assert len(squad_dev) == 1174  # SOURCE.md
    first = squad_dev.rows[0]
    assert first["id"] == "56e16182e3433e1400422e28" and first["title"] == "Computational_complexity_theory"
    assert first["question"].startswith("What branch of theoretical computer science")
    assert [a["text"] for a in first["answers"]] == ["Computational complexity theory"] * 3
    assert squad_dev.where(0) == f"{SQUAD_DEV}: question id '56e16182e3433e1400422e28'"


def test_flat_jsonl_and_saved_dataset_give_the_same_features(tokenizer, squad_dev, tmp_path):
    from datasets import Dataset

    task = make(tokenizer, max_length=128, doc_stride=32)
    rows = flat_rows(squad_dev, range(40))
    jsonl = tmp_path / "dev.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    reference = task.encode(subset(squad_dev, range(40)), with_targets=True)
    for source in (jsonl, tmp_path / "saved"):
        features = task.encode(task.read(source), with_targets=True)
        for key in ("input_ids", "example", "start_positions", "end_positions", "offset_mapping"):
            assert features[key] == reference[key], (source, key)


# ---------------------------------------------------------------------------------------- windows, labels


def test_windows_overlap_by_doc_stride_and_labels_follow_the_answer(tokenizer, squad_dev):
    task = make(tokenizer, max_length=64, doc_stride=16)
    records = subset(squad_dev, range(300))
    f = task.encode(records, with_targets=True)
    example = np.asarray(f["example"])
    spans = task.targets(records)
    later_only = 0
    for r in range(len(records)):
        windows = np.flatnonzero(example == r)
        ctx = [np.asarray(f["input_ids"][w])[np.asarray(f["context"][w]) == 1] for w in windows]
        # consecutive windows share exactly doc_stride context tokens, and together hold the whole context
        for a, b in itertools.pairwise(ctx):
            assert (a[-16:] == b[:16]).all()
        full = tokenizer(records.rows[r]["context"], add_special_tokens=False)["input_ids"]
        assert [t for c in ctx[:1] for t in c] + [t for c in ctx[1:] for t in c[16:]] == full
        s, e = spans[r]
        labelled = []
        for k, w in enumerate(windows):
            offsets = np.asarray(f["offset_mapping"][w])[np.asarray(f["context"][w]) == 1]
            holds = offsets[0, 0] <= s and offsets[-1, 1] >= e
            start, end = f["start_positions"][w], f["end_positions"][w]
            if not holds:
                assert start == end == 0  # [CLS]
                continue
            labelled.append(k)
            text = records.rows[r]["context"][f["offset_mapping"][w][start][0] : f["offset_mapping"][w][end][1]]
            assert records.rows[r]["context"][s:e] in text and len(text) <= (e - s) + 8
        assert labelled, r
        later_only += labelled[0] > 0
    assert later_only > 100  # most of these answers sit beyond the first 64-token window


def test_unanswerable_questions_point_at_cls_and_need_the_option(tokenizer, squad_dev, tmp_path):
    rows = flat_rows(squad_dev, range(5))
    rows[2]["answers"] = {"text": [], "answer_start": []}  # SQuAD v2: no answer in the context
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(nested(rows)))
    task = make(tokenizer, allow_unanswerable=True, max_length=64, doc_stride=16)
    records = task.read(path)
    assert task.targets(records)[2] is None and task.summary(records)["unanswerable"] == 1
    f = task.encode(records, with_targets=True)
    for w, ex in enumerate(f["example"]):
        if ex == 2:
            assert f["start_positions"][w] == f["end_positions"][w] == 0
    with pytest.raises(
        HftkError, match=r"v2.json: question id '.*': the question has no answer; .* allow_unanswerable"
    ):
        make(tokenizer).targets(records)


def test_squad_answers_recovered_from_tokens(tokenizer, squad_dev):
    bad = make(tokenizer).unaligned(squad_dev)
    # Three answers end inside a word ("gold rush" of "gold rushes", "success(ful)" of "successfully").
    texts = sorted(squad_dev.rows[i]["answers"][0]["text"] for i in bad)
    assert texts == ["gold rush", "success", "successful"]


def test_jsquad_answers_recovered_from_tokens(ja_fixture):
    """Gold answer -> token span -> text, for every JSQuAD dev question, with the fast Japanese tokenizer."""
    recipe = load_recipe({"task": "question-answering", "model": str(ja_fixture), "data": {}})
    task = get_task("question-answering")(recipe, load_tokenizer(str(ja_fixture)))
    records = task.read(JSQUAD)
    bad = task.unaligned(records)
    print(f"JSQuAD dev: {len(records) - len(bad)} of {len(records)} gold answers recovered exactly, {len(bad)} not")
    assert len(records) == 4442 and len(bad) <= 20  # 8 when written: answers that end inside a MeCab word


# ---------------------------------------------------------------------------------------------- decoding


def softmax(x):
    z = np.exp(x - x.max())
    return z / z.sum()


def one_record(task, question: str, context: str):
    records = Records("<test>", [{"question": question, "context": context}], None, ["question", "context"])
    return records, task.encode(records, with_targets=False)


def peaked(features, w: int, start: int, end: int, high: float = 8.0):
    n = len(features["input_ids"][w])
    s, e = np.zeros(n, np.float32), np.zeros(n, np.float32)
    s[start], e[end] = high, high
    return s, e


def test_decode_picks_the_best_span_with_pipeline_scores(tokenizer):
    task = make(tokenizer)
    context = "The Denver Broncos defeated the Carolina Panthers 24-10 to earn their third Super Bowl title."
    records, f = one_record(task, "Who won?", context)
    tokens = f["input_ids"][0]
    i = tokens.index(tokenizer.convert_tokens_to_ids("denver"))
    j = tokens.index(tokenizer.convert_tokens_to_ids("broncos"))
    s, e = peaked(f, 0, i, j)
    [out] = task.postprocess(records, f, [(s, e)])
    assert (out["answer"], out["start"], out["end"]) == ("Denver Broncos", 4, 18)
    allowed = np.asarray(f["context"][0], bool)
    allowed[0] = True  # [CLS] takes part in the softmax, as in the pipeline
    p_s, p_e = softmax(np.where(allowed, s, -np.inf)), softmax(np.where(allowed, e, -np.inf))
    # the span itself plus any other spans whose text is the same (none here)
    assert out["score"] == pytest.approx(p_s[i] * p_e[j], rel=1e-5)


def test_decode_respects_max_answer_length_and_words(tokenizer):
    task = make(tokenizer, max_answer_length=3)
    context = "The cat sat on the mat, unhappily waiting for dinner."
    records, f = one_record(task, "How?", context)
    tokens = tokenizer.convert_ids_to_tokens(f["input_ids"][0])
    cat, dinner = tokens.index("cat"), tokens.index("dinner")
    s, e = peaked(f, 0, cat, dinner)
    s[cat + 1] = 6.0  # the best span within 3 tokens starts at 'sat' and ends at 'dinner'? no: too far
    [out] = task.postprocess(records, f, [(s, e)])
    assert out["answer"] != context[4:52]  # 'cat ... dinner' is longer than 3 tokens
    [out] = task.postprocess(records, f, [(s, e)], max_answer_length=20)
    assert out["answer"] == "cat sat on the mat, unhappily waiting for dinner"
    ily = tokens.index("##ily")
    s, e = peaked(f, 0, ily, ily)
    [out] = task.postprocess(records, f, [(s, e)])
    assert out["answer"] == "unhappily"  # widened to the whole word
    unaligned = make(tokenizer, align_to_words=False)
    [out] = unaligned.postprocess(records, f, [(s, e)])
    assert out["answer"] == "ily" and context[out["start"] : out["end"]] == "ily"


def test_decode_finds_the_answer_in_a_later_window_and_top_k(tokenizer, squad_dev):
    task = make(tokenizer, max_length=64, doc_stride=16)
    r = 606  # Packet_switching: a paragraph of 14 windows at max_length 96, more at 64
    records = subset(squad_dev, [r])
    f = task.encode(records, with_targets=False)
    assert len(f["input_ids"]) > 5
    outputs = [(np.zeros(len(ids), np.float32), np.zeros(len(ids), np.float32)) for ids in f["input_ids"]]
    w = 4
    tokens = tokenizer.convert_ids_to_tokens(f["input_ids"][w])
    ctx = np.flatnonzero(f["context"][w])
    # a three-token span of whole words inside the window's context
    a = next(int(t) for t in ctx[2:] if not tokens[t].startswith("##") and not tokens[t + 3].startswith("##"))
    outputs[w] = peaked(f, w, a, a + 2, high=12.0)
    [out] = task.postprocess(records, f, outputs, top_k=3)
    offsets = f["offset_mapping"][w]
    assert out["start"] == offsets[a][0] and out["end"] == offsets[a + 2][1]
    assert out["answer"] == records.rows[0]["context"][out["start"] : out["end"]]
    assert len(out["top_k"]) == 3 and out["top_k"][0]["answer"] == out["answer"]
    scores = [a["score"] for a in out["top_k"]]
    assert scores == sorted(scores, reverse=True) and len({a["answer"].lower() for a in out["top_k"]}) == 3


def test_null_answer_and_threshold(tokenizer):
    context = "The Denver Broncos defeated the Carolina Panthers."
    task = make(tokenizer, allow_unanswerable=True)
    records, f = one_record(task, "Who lost?", context)
    n = len(f["input_ids"][0])
    s, e = np.zeros(n, np.float32), np.zeros(n, np.float32)
    s[0] = e[0] = 5.0  # [CLS]: no answer
    [out] = task.postprocess(records, f, [(s, e)])
    assert out["answer"] == "" and out["start"] == out["end"] == 0
    lenient = make(tokenizer, allow_unanswerable=True, null_score_threshold=20.0)
    assert lenient.postprocess(records, f, [(s, e)])[0]["answer"] != ""
    assert make(tokenizer).postprocess(records, f, [(s, e)])[0]["answer"] != ""  # v1: always a span


def pipeline_reference(tokenizer, model, rows, *, max_length, doc_stride, max_answer_len, top_k=1):
    """transformers' question-answering pipeline (v4) rebuilt from transformers' own span selection
    (`select_starts_ends`, kept in v5 by the document-QA pipeline) and `tokenizers` word alignment."""
    import torch
    from transformers.pipelines.document_question_answering import select_starts_ends

    results = []
    for row in rows:
        enc = tokenizer(
            row["question"],
            row["context"],
            truncation="only_second",
            max_length=max_length,
            stride=doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_token_type_ids=True,
        )
        answers: list[dict] = []
        for w in range(len(enc["input_ids"])):
            ids = enc["input_ids"][w]
            p_mask = np.array([s != 1 for s in enc.sequence_ids(w)], dtype=int)
            p_mask[np.asarray(ids) == tokenizer.cls_token_id] = 0
            with torch.inference_mode():
                out = model(**{k: torch.tensor([enc[k][w]]) for k in tokenizer.model_input_names})
            starts, ends, scores, _ = select_starts_ends(
                out.start_logits.numpy(),
                out.end_logits.numpy(),
                p_mask,
                np.array([enc["attention_mask"][w]]),
                top_k=top_k * 2 + 10,
                max_answer_len=max_answer_len,
            )
            encoding = enc.encodings[w]
            for s, e, score in zip(starts, ends, scores):
                try:
                    a = encoding.word_to_chars(encoding.token_to_word(s), sequence_index=1)[0]
                    b = encoding.word_to_chars(encoding.token_to_word(e), sequence_index=1)[1]
                except Exception:
                    a, b = encoding.offsets[s][0], encoding.offsets[e][1]
                text = row["context"][a:b]
                same = [x for x in answers if x["answer"].lower() == text.lower()]
                if same:
                    same[0]["score"] += score.item()
                else:
                    answers.append({"score": score.item(), "start": a, "end": b, "answer": text})
        results.append(sorted(answers, key=lambda x: x["score"], reverse=True)[:top_k])
    return results


def test_decode_matches_pipeline_span_selection_on_random_logits(tokenizer, squad_dev):
    """Vectorised decoding vs transformers' own per-window code, over many real multi-window contexts."""
    import torch

    class RandomQA(torch.nn.Module):
        def forward(self, input_ids, **_):
            g = torch.Generator().manual_seed(int(input_ids.sum()))
            shape = input_ids.shape
            return type(
                "Out",
                (),
                {
                    "start_logits": torch.randn(shape, generator=g) * 3,
                    "end_logits": torch.randn(shape, generator=g) * 3,
                },
            )

    model = RandomQA()
    task = make(tokenizer, max_length=96, doc_stride=32, max_answer_length=15)
    records = subset(squad_dev, range(0, 1174, 20))
    f = task.encode(records, with_targets=False)
    outputs = []
    for w in range(len(f["input_ids"])):
        out = model(torch.tensor([f["input_ids"][w]]))
        outputs.append((out.start_logits[0].numpy(), out.end_logits[0].numpy()))
    mine = task.postprocess(records, f, outputs, top_k=3)
    reference = pipeline_reference(
        tokenizer, model, records.rows, max_length=96, doc_stride=32, max_answer_len=15, top_k=3
    )
    for got, want in zip(mine, reference):
        assert [(a["answer"], a["start"], a["end"]) for a in got["top_k"]] == [
            (a["answer"], a["start"], a["end"]) for a in want
        ]
        assert [a["score"] for a in got["top_k"]] == pytest.approx([a["score"] for a in want], rel=1e-4)


# ----------------------------------------------------------------------------------------------- metrics


def test_metric_follows_the_tokenizer_unless_named(tokenizer, ja_fixture):
    assert make(tokenizer).metric == "squad" and make(tokenizer, metric="jsquad").metric == "jsquad"
    recipe = load_recipe({"task": "question-answering", "model": str(ja_fixture), "data": {}})
    assert get_task("question-answering")(recipe, load_tokenizer(str(ja_fixture))).metric == "jsquad"


# --------------------------------------------------------------------------------------------- bad input


@pytest.fixture
def bad_recipe(tmp_path):
    def write(train: Path) -> Path:
        recipe = tmp_path / "qa.yaml"
        recipe.write_text(f"task: question-answering\nmodel: {MINILM}\ndata:\n  train: {train}\nmax_length: 256\n")
        return recipe

    return write


def test_answer_start_not_matching_its_text(squad_dev, tmp_path, bad_recipe):
    rows = flat_rows(squad_dev, range(6))
    rows[3]["answers"]["answer_start"][0] += 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(nested(rows)))
    proc = hftk("check", str(bad_recipe(bad)))
    assert_user_error(proc, f"{bad}: question id '{rows[3]['id']}': answer ", "is not at answer_start")


def test_missing_question(squad_dev, tmp_path, bad_recipe):
    rows = flat_rows(squad_dev, range(4))
    del rows[1]["question"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = hftk("check", str(bad_recipe(bad)))
    assert_user_error(proc, f"{bad}:2: question id '{rows[1]['id']}': the question is missing")


def test_missing_context(squad_dev, tmp_path, bad_recipe):
    doc = nested(flat_rows(squad_dev, range(30)))
    del doc["data"][0]["paragraphs"][-1]["context"]
    qid = doc["data"][0]["paragraphs"][-1]["qas"][0]["id"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    proc = hftk("check", str(bad_recipe(bad)))
    assert_user_error(proc, f"{bad}: question id '{qid}': the context is missing")


def test_duplicate_ids(squad_dev, tmp_path, bad_recipe):
    rows = flat_rows(squad_dev, range(4))
    rows[3]["id"] = rows[0]["id"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = hftk("check", str(bad_recipe(bad)))
    assert_user_error(proc, f"{bad}:4: question id '{rows[0]['id']}': duplicate id (questions 1 and 4")


def test_doc_stride_must_leave_room():
    # Given on the command line, the error names it (not the recipe file, where the value is fine).
    with pytest.raises(HftkError, match=r"^--set doc_stride: must be at most half of max_length \(384\)"):
        load_recipe(ROOT / "recipes/squad-minilm.yaml", {"doc_stride": 200})


def test_check_reports_windows_for_the_squad_recipe():
    proc = hftk("check", "recipes/squad-minilm.yaml", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["train"]["rows"] == 5836 and report["validation"]["rows"] == 1174
    assert report["validation"]["answers per question"] > 2.9 and report["train"]["contexts"] == 1050
    assert any("need more than one window" in w for w in report["warnings"])
    assert not any("truncated" in w for w in report["warnings"])


def test_check_validates_the_jsquad_recipe_offline():
    proc = hftk("check", "recipes/jsquad-ja.yaml")  # names a hub model: not available offline
    assert proc.returncode == 0, proc.stderr
    assert "train: 4057 rows" in proc.stdout and "validation: 4442 rows" in proc.stdout


# ------------------------------------------------------------------------------------------ trained models


@pytest.fixture(scope="module")
def window_model(squad_dev, tmp_path_factory):
    """MiniLM trained, with 96-token windows, on the real questions of two long SQuAD paragraphs."""
    # Two American_Broadcasting_Company paragraphs of 5-6 windows at max_length 96, with all their questions:
    # most of the answers lie beyond the first window.
    long = {squad_dev.rows[i]["context"] for i in (709, 738)}
    rows = flat_rows(squad_dev, [i for i in range(len(squad_dev)) if squad_dev.rows[i]["context"] in long])
    training = {"num_train_epochs": 10, "learning_rate": 3e-4, "per_device_train_batch_size": 8, "warmup_steps": 5}
    return train_on_rows(tmp_path_factory.mktemp("qa"), rows, **training), rows


def train_on_rows(d: Path, rows: list[dict], **training) -> Path:
    """MiniLM trained on flat QA rows with 96-token windows (stride 32); returns the output directory."""
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "task": "question-answering",
        "model": MINILM,
        "data": {"train": str(d / "train.jsonl")},
        "max_length": 96,
        "doc_stride": 32,
        "training": training,
        "output_dir": str(d / "model"),
    }
    return train(recipe).output_dir


@pytest.mark.slow  # about 5 CPU minutes
def test_trained_model_answers_from_later_windows(window_model, tokenizer):
    """Answers that only a later window holds: labels there, [CLS] elsewhere, the right window wins at decoding,
    and its offsets map back into the whole context. Without windows none of these could be found."""
    out, rows = window_model
    task = make(tokenizer, max_length=96, doc_stride=32)
    records = Records("<rows>", rows, None, ["id", "question", "context", "answers"])
    f = task.encode(records, with_targets=True)
    first_window, first_end = {}, {}
    for w, (ex, s) in enumerate(zip(f["example"], f["start_positions"])):
        if ex not in first_end:  # the first window of each record: where its context stops
            first_end[ex] = max(o[1] for o, c in zip(f["offset_mapping"][w], f["context"][w]) if c)
        if s != 0:
            first_window.setdefault(ex, w - f["example"].index(ex))
    later = [i for i, k in first_window.items() if k > 0]
    predictions = Predictor(out).predict([{"question": r["question"], "context": r["context"]} for r in rows])
    right = [
        i
        for i in later
        if predictions[i]["answer"] in rows[i]["answers"]["text"] and predictions[i]["start"] >= first_end[i]
    ]
    print(f"{len(right)} of {len(later)} answers found only in a later window")  # 6 of 9 when written
    assert len(later) == 9 and len(right) >= 5
    for i in later:
        p = predictions[i]
        assert rows[i]["context"][p["start"] : p["end"]] == p["answer"]


@pytest.fixture(scope="module")
def quick_model(squad_dev, tmp_path_factory):
    """MiniLM after a few steps on real rows: enough for an output directory whose answers vary by input."""
    rows = flat_rows(squad_dev, range(0, 400, 10))
    return train_on_rows(
        tmp_path_factory.mktemp("qa-quick"), rows, max_steps=6, learning_rate=3e-4, per_device_train_batch_size=8
    )


def test_output_dir_answers_like_the_pipeline(quick_model, squad_dev):
    """The saved directory, loaded by plain transformers, answers as `hftk predict` does on real rows."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    model = AutoModelForQuestionAnswering.from_pretrained(quick_model).eval()
    real = flat_rows(squad_dev, range(3, 1174, 79))
    want = pipeline_reference(
        AutoTokenizer.from_pretrained(quick_model), model, real, max_length=96, doc_stride=32, max_answer_len=30
    )
    got = Predictor(quick_model, precision="fp32").predict(
        [{"question": r["question"], "context": r["context"]} for r in real]
    )
    assert [(g["answer"], g["start"], g["end"]) for g in got] == [
        (w[0]["answer"], w[0]["start"], w[0]["end"]) for w in want
    ]
    assert [g["score"] for g in got] == pytest.approx([w[0]["score"] for w in want], rel=1e-3)


def test_hftk_pipeline_serves_the_removed_question_answering_pipeline(quick_model, squad_dev):
    """transformers 5 has no pipeline("question-answering"); hftk.pipeline answers with its call and outputs."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    import hftk

    real = flat_rows(squad_dev, range(5, 1174, 97))
    model = AutoModelForQuestionAnswering.from_pretrained(quick_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(quick_model)
    settings = {"max_seq_len": 96, "doc_stride": 32, "max_answer_len": 20}
    reference = {"max_length": 96, "doc_stride": 32, "max_answer_len": 20}
    # The pipeline merges candidates by text over a pool that grows with top_k: compare per top_k.
    want = pipeline_reference(tokenizer, model, real, **reference)
    want3 = pipeline_reference(tokenizer, model, real, **reference, top_k=3)
    qa = hftk.pipeline("question-answering", model=str(quick_model), device="cpu")
    one = qa(question=real[0]["question"], context=real[0]["context"], **settings)
    assert set(one) == {"score", "start", "end", "answer"} and one["answer"] == want[0][0]["answer"]
    batch = qa([{"question": r["question"], "context": r["context"]} for r in real], **settings)
    assert [(a["answer"], a["start"], a["end"]) for a in batch] == [
        (w[0]["answer"], w[0]["start"], w[0]["end"]) for w in want
    ]
    top = qa(question=[r["question"] for r in real], context=[r["context"] for r in real], top_k=3, **settings)
    assert [[a["answer"] for a in t] for t in top] == [[a["answer"] for a in w] for w in want3]
    assert [a["score"] for t in top for a in t] == pytest.approx([a["score"] for w in want3 for a in w], rel=1e-3)
    card = (quick_model / "README.md").read_text()
    assert 'hftk.pipeline("question-answering"' in card


_TF4_SCRIPT = """
import json, sys
from transformers import pipeline
qa = pipeline("question-answering", model=sys.argv[1])
rows = json.load(open(sys.argv[2]))
print(json.dumps([qa(question=r["question"], context=r["context"], max_seq_len=96, doc_stride=32, max_answer_len=30)
                  for r in rows]))
"""


@pytest.mark.skipif(
    not os.environ.get("HFTK_TF4_PYTHON"),
    reason="transformers 5 has no question-answering pipeline; HFTK_TF4_PYTHON=a Python with transformers 4.x runs it",
)
def test_output_dir_in_the_transformers4_pipeline(quick_model, squad_dev, tmp_path):
    out = quick_model
    real = flat_rows(squad_dev, range(3, 1174, 79))
    inputs = tmp_path / "rows.json"
    inputs.write_text(json.dumps(real))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    proc = subprocess.run(
        [os.environ["HFTK_TF4_PYTHON"], "-c", _TF4_SCRIPT, str(out), str(inputs)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    want = json.loads(proc.stdout.strip().splitlines()[-1])
    got = Predictor(out).predict([{"question": r["question"], "context": r["context"]} for r in real])
    assert [(g["answer"], g["start"], g["end"]) for g in got] == [(w["answer"], w["start"], w["end"]) for w in want]
    assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], rel=1e-3)


def head_squad(src: Path, dst: Path, questions: int) -> Path:
    """The first questions of a SQuAD-layout file, whole paragraphs, in the same layout."""
    doc = json.loads(src.read_text(encoding="utf-8"))
    articles, n = [], 0
    for article in doc["data"]:
        paragraphs = []
        for p in article["paragraphs"]:
            if n >= questions:
                break
            paragraphs.append(p)
            n += len(p["qas"])
        if paragraphs:
            articles.append({**article, "paragraphs": paragraphs})
    dst.write_text(json.dumps({"data": articles}, ensure_ascii=False), encoding="utf-8")
    return dst


def test_japanese_recipe_end_to_end_on_the_fixture(ja_fixture, tmp_path):
    """recipes/jsquad-ja.yaml on the tiny Tohoku-format fixture: train, JSQuAD metric, predict, evaluate."""
    train_file = head_squad(JAQUAD, tmp_path / "train.json", 200)
    dev_file = head_squad(JSQUAD, tmp_path / "dev.json", 60)
    result = train(
        ROOT / "recipes/jsquad-ja.yaml",
        overrides={
            "model": str(ja_fixture),
            "data.train": str(train_file),
            "data.validation": str(dev_file),
            "max_length": 128,
            "doc_stride": 32,
            "training.num_train_epochs": 1,
            "training.learning_rate": 1e-3,
        },
        output_dir=tmp_path / "ja",
    )
    eval_metrics = result.metrics["eval"]
    assert 0.0 <= eval_metrics["eval_exact_match"] <= eval_metrics["eval_f1"] <= 1.0
    predictor = Predictor(result.output_dir)
    assert predictor.task.metric == "jsquad"
    # evaluation in encode order gives the numbers Trainer computed on length-sorted windows
    again = predictor.evaluate(predictor.task.read(dev_file))
    assert again["f1"] == pytest.approx(eval_metrics["eval_f1"]) and again["exact_match"] == pytest.approx(
        eval_metrics["eval_exact_match"]
    )
    records = predictor.task.read(dev_file)
    predictions = predictor.predict(records, top_k=2)
    assert len(predictions) == len(records)
    for row, p in zip(records.rows, predictions):
        assert p["answer"] and row["context"][p["start"] : p["end"]] == p["answer"] and len(p["top_k"]) == 2


@pytest.mark.slow
def test_squad_recipe_learns(tmp_path):
    """The shipped recipe as is (one epoch of 5,836 questions): dev F1 of 0.5 or more (bench/RESULTS.md)."""
    result = train(ROOT / "recipes/squad-minilm.yaml", output_dir=tmp_path / "squad")
    assert result.metrics["eval"]["eval_f1"] >= 0.5
