"""Training features for every task (hftk/features/encode.py): encoded by `datasets.map` in batches and processes, the
same as one `encode` call, cached by content, and with bad rows still named by file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import hftk.features.cache
import hftk.features.encode
from hftk import HftkError
from hftk.data.readers import read_records
from hftk.features.cache import cache_root
from hftk.models.loading import load_tokenizer

from ..helpers import DATA, MINILM, ROOT, classification, features, head, sst2_recipe, task_for

pytestmark = pytest.mark.usefixtures("own_cache")  # warm and cold are what each test makes them


def sst2(tmp_path: Path, rows: int = 300) -> Path:
    return head(DATA / "en/sst2/train.tsv", tmp_path / "train.tsv", rows)


def test_batched_features_equal_one_encode_and_come_back_from_the_cache(tmp_path, tok, monkeypatch):
    monkeypatch.setattr(hftk.features.encode, "BATCH", 64)  # several batches
    records = read_records(sst2(tmp_path))
    task = classification(tok, records)
    cold, warm = features(task, records)
    assert not warm
    assert cold.to_dict() == task.encode(records, with_targets=True)
    again, warm = features(
        classification(tok, read_records(tmp_path / "train.tsv")), read_records(tmp_path / "train.tsv")
    )
    assert warm and again.to_dict() == cold.to_dict()
    assert [p.name[0] != "." for p in cache_root().iterdir()] == [True]  # one entry, no work folder left


def test_any_change_to_what_features_depend_on_misses_the_cache(tmp_path, tok, gpt2_fixture, monkeypatch):
    path = sst2(tmp_path, 100)
    records = read_records(path)
    features(classification(tok, records), records)
    assert features(classification(tok, records), records)[1]
    # max_length, the label order, another tokenizer: each names another entry
    assert not features(classification(tok, records, max_length=16), records)[1]
    assert not features(classification(tok, records, labels={"1": "positive", "0": "negative"}), records)[1]
    other = classification(load_tokenizer(str(gpt2_fixture)), records)
    assert not features(other, records)[1]
    # the same path with other bytes
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:-1]), encoding="utf-8")
    changed = read_records(path)
    dataset, warm = features(classification(tok, changed), changed)
    assert not warm and len(dataset) == len(records) - 1
    # what only training reads does not: another learning rate, output folder or seed is a warm start
    same = classification(tok, changed, training={"learning_rate": 1e-3}, output_dir="elsewhere", seed=7)
    assert features(same, changed)[1]
    # other hftk code (a new release, an edited checkout) builds anew
    monkeypatch.setattr(hftk.features.cache, "code_digest", lambda: "another release")
    assert not features(classification(tok, changed), changed)[1]


def test_no_cache_keeps_nothing(tmp_path, tok):
    records = read_records(sst2(tmp_path, 100))
    dataset, warm = features(classification(tok, records), records, cache=False)
    assert not warm and len(dataset) == 100
    assert not cache_root().exists()  # the work folder was a temporary one elsewhere


def test_two_processes_encode_what_one_encodes(tmp_path, tok, monkeypatch):
    records = read_records(sst2(tmp_path, 400))
    task = classification(tok, records)
    one, _ = features(task, records, cache=False)
    monkeypatch.setattr(hftk.features.encode, "_ROWS_PER_PROCESS", 100)
    two, _ = features(task, records, num_proc=2, cache=False)
    assert len(two.cache_files) == 2  # one Arrow file per worker
    assert two.to_dict() == one.to_dict()


def test_a_bad_row_in_a_worker_names_its_file_and_line(tmp_path, tok, monkeypatch):
    path = sst2(tmp_path, 400)
    train = read_records(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[350] = lines[350].rsplit("\t", 1)[0] + "\tneutral"  # line 351: a label train never had
    bad = tmp_path / "bad.tsv"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setattr(hftk.features.encode, "_ROWS_PER_PROCESS", 100)
    with pytest.raises(HftkError, match=rf"^{bad}:351: label 'neutral' is not among the training labels"):
        features(classification(tok, train), read_records(bad), num_proc=2)
    assert not cache_root().exists() or not any(cache_root().iterdir())  # nothing half-built stays


def test_windowed_tasks_point_each_feature_at_its_record_across_batches(tok, monkeypatch):
    """NER and QA features carry `example`: an index into the split, whatever batch encoded them."""
    monkeypatch.setattr(hftk.features.encode, "BATCH", 7)
    qa = task_for(tok, ROOT / "recipes/squad-minilm.yaml", max_length=96, doc_stride=32)
    questions = qa.read(DATA / "en/squad/validation.json")
    squad, _ = features(qa, questions)
    assert squad.to_dict() == qa.encode(questions, with_targets=True)
    assert max(squad["example"]) == len(questions) - 1

    ner = task_for(tok, ROOT / "recipes/ner-wikipedia-ja.yaml", model=MINILM, max_length=32, stride=8)
    sentences = ner.read(ROOT / ner.recipe.data.validation)
    ner.fit(sentences)
    tagged, _ = features(ner, sentences)
    assert tagged.to_dict() == json.loads(json.dumps(ner.encode(sentences, with_targets=True)))  # tuples: lists
    assert len(tagged) > len(sentences)  # windows: several features for some records


def test_rows_json_cannot_carry_are_encoded_in_this_process(tmp_path, tok):
    """A Parquet file with a timestamp column: its rows are not JSON, so they are not sent to workers; the
    features are the same."""
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = read_records(sst2(tmp_path, 50)).rows
    when = [datetime.datetime(2026, 12, 2, 12, i) for i in range(len(rows))]
    table = pa.table({"sentence": [r["sentence"] for r in rows], "label": [r["label"] for r in rows], "when": when})
    pq.write_table(table, tmp_path / "train.parquet")
    records = read_records(tmp_path / "train.parquet")
    task = classification(tok, records)
    dataset, warm = features(task, records)
    assert not warm and dataset.to_dict() == task.encode(records, with_targets=True)
    assert features(task, records)[1]


# ------------------------------------------------------------------------------------------------ streaming


@pytest.mark.slow  # 63 s; make test-slow runs it (keeps make test under CI's 30 minutes)
def test_a_streamed_classifier_learns_shuffled_rows_and_resumes_on_the_same_batches(sst2_small, tmp_path, monkeypatch):
    """data.streaming: rows are read, encoded and shuffled (within a buffer) on the fly; MiniLM still learns
    SST-2 from them, and a run stopped at step 2 and resumed to 4 trains steps 3 and 4 on the straight run's
    batches (Trainer replays the seeded stream and skips what was used)."""
    from transformers import DataCollatorWithPadding

    from hftk import train

    batches: list[tuple] = []
    collate = DataCollatorWithPadding.__call__

    def spy(self, features):
        if len(features) == 16:  # training batches; evaluation's are 64 and the rest
            batches.append(tuple(tuple(f["input_ids"]) for f in features))
        return collate(self, features)

    monkeypatch.setattr(DataCollatorWithPadding, "__call__", spy)
    training = {
        "per_device_train_batch_size": 16,
        "save_strategy": "steps",
        "save_steps": 2,
        "eval_strategy": "no",
        "load_best_model_at_end": False,
    }

    def run(steps: int, out: str, **kw):
        recipe = sst2_recipe(
            sst2_small, tmp_path / out, data={"streaming": True}, training={**training, "max_steps": steps}
        )
        return train(recipe, **kw)

    straight = run(60, "straight")  # 960 rows; the same run unstreamed reaches 0.70
    assert straight.metrics["eval"]["eval_accuracy"] > 0.65  # chance is 0.5
    first = batches[:4]
    rows = read_records(sst2_small["train"]).rows[:16]
    in_file_order = tuple(tuple(x) for x in tok_ids(rows))
    assert first[0] != in_file_order
    batches.clear()
    run(2, "b")
    assert batches[:2] == first[:2]
    batches.clear()
    resumed = run(4, "b", resume=True)
    assert resumed.start_step == 2 and resumed.global_step == 4
    assert batches[:2] == first[:2] and batches[2:4] == first[2:4]


def test_a_streamed_run_trains_on_the_rows_checked_while_its_file_grows_and_stops_when_it_is_edited(tmp_path):
    """A writer appends 400 rows and a broken one to the training file once the checking pass is done (at
    on_train_begin): the run trains on the 40 rows checked (metrics say train: 40), into a second pass over them;
    a file edited in place instead stops the run at its first training pass, naming the file."""
    from transformers import TrainerCallback

    from hftk import train

    paths = {
        "train": head(DATA / "en/sst2/train.tsv", tmp_path / "train.tsv", 40),
        "validation": head(DATA / "en/sst2/dev.tsv", tmp_path / "dev.tsv", 20),
    }
    original = paths["train"].read_text(encoding="utf-8")

    class Writer(TrainerCallback):
        def __init__(self, change):
            self.change = change

        def on_train_begin(self, args, state, control, **kwargs):
            self.change(paths["train"])

    def append(p):
        with open(p, "a", encoding="utf-8") as f:
            f.write(original.split("\n", 1)[1] * 10 + "broken\trow\twith three fields\n")

    def edit(p):
        p.write_text(original.replace("\t0\n", "\t1\n", 1), encoding="utf-8")

    training = {"max_steps": 6, "per_device_train_batch_size": 8, "eval_strategy": "no", "save_strategy": "no"}
    training["load_best_model_at_end"] = False
    recipe = sst2_recipe(paths, tmp_path / "out", data={"streaming": True}, training=training)
    result = train(recipe, callbacks=[Writer(append)])
    assert result.global_step == 6 and result.metrics["data"]["train"] == 40  # 48 rows: 40, then 8 of them again
    paths["train"].write_text(original, encoding="utf-8")
    with pytest.raises(HftkError, match=r"train.tsv: changed since it was checked at start \(its checked bytes"):
        train(recipe, callbacks=[Writer(edit)], overwrite=True)


def tok_ids(rows):
    tokenizer = load_tokenizer(MINILM)
    return tokenizer([r["sentence"] for r in rows], truncation=True, max_length=64)["input_ids"]
