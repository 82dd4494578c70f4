"""End to end on real SST-2 rows and real MiniLM weights: train, output directory, pipeline(), resume; crash
safety: a run killed with SIGKILL resumes to the same result, --overwrite replaces the old run whole."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hftk import HftkError, Predictor, train
from hftk.data.readers import read_records
from hftk.files import LOCK, checkpoint_problem, last_complete_checkpoint, locked
from hftk.models.loading import device_policy

from ..helpers import DATA, MINILM, ROOT, cli, head, sst2_recipe, tiny_model


def test_trained_model_learns_and_its_directory_is_complete(sst2_model):
    files = {p.name for p in sst2_model.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= files
    assert {"metrics.json", "recipe.yaml", "README.md", "training_curve.png"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)  # safetensors, no pickles
    metrics = json.loads((sst2_model / "metrics.json").read_text())
    # 1,200 real training rows, one epoch: clearly above the 0.5 of chance on 300 dev rows.
    assert metrics["eval"]["eval_accuracy"] > 0.7
    policy = device_policy("auto")  # this machine's CPU: bf16 where it computes it
    device = {"device": "cpu", "precision": policy.precision, "world_size": 1}
    assert metrics["device"] == device | ({"precision_reason": policy.why} if policy.why else {})
    card = (sst2_model / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and "| eval | accuracy |" in card
    config = json.loads((sst2_model / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}


def test_output_loads_in_transformers_pipeline_and_agrees_with_predictor(sst2_model):
    from transformers import pipeline

    texts = [r["sentence"] for r in read_records(DATA / "en/sst2/dev.tsv").rows[300:400]]
    pipe = pipeline("text-classification", model=str(sst2_model), device="cpu")
    expected = pipe(texts, batch_size=16)
    got = Predictor(sst2_model, precision="fp32").predict(texts)
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    assert [g["score"] for g in got] == pytest.approx([e["score"] for e in expected], abs=1e-4)


def test_refuses_non_empty_output_dir(sst2_model, sst2_small):
    before = {p.name: p.stat().st_mtime_ns for p in sst2_model.iterdir()}
    with pytest.raises(HftkError, match=r"output directory is not empty; pass --resume .* --overwrite"):
        train(sst2_recipe(sst2_small, sst2_model))
    assert {p.name: p.stat().st_mtime_ns for p in sst2_model.iterdir()} == before


def test_resume_continues_from_last_checkpoint(tmp_path):
    rows = {"train": head(DATA / "en/sst2/train.tsv", tmp_path / "train.tsv", 320)}
    rows["validation"] = head(DATA / "en/sst2/dev.tsv", tmp_path / "dev.tsv", 64)
    out = tmp_path / "run"
    recipe = sst2_recipe(
        rows,
        out,
        training={
            "max_steps": 6,
            "save_strategy": "steps",
            "save_steps": 3,
            "eval_strategy": "no",
            "load_best_model_at_end": False,
            "per_device_train_batch_size": 16,
        },
    )
    assert train(recipe).global_step == 6
    recipe["training"]["max_steps"] = 9
    resumed = train(recipe, resume=True)
    assert (resumed.start_step, resumed.global_step) == (6, 9)
    # A short run logs every step (logging_steps: 2 % of the steps, at least 1), so its curve has points.
    state = json.loads((out / "checkpoints" / "checkpoint-9" / "trainer_state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "loss" in h] == list(range(1, 10))

    # Resuming a finished run trains no step past the end: it says so and changes nothing.
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    again = train(recipe, resume=True)
    assert (again.start_step, again.global_step) == (9, 9)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not (out / "checkpoints" / "checkpoint-10").exists()

    # Killed while saving the final model (weights and metrics not yet in place): --resume finishes the save
    # from the last checkpoint, again without a step past the end.
    (out / "model.safetensors").unlink()
    (out / "metrics.json").unlink()
    finished = train(recipe, resume=True)
    assert (finished.start_step, finished.global_step) == (9, 9)
    assert not (out / "checkpoints" / "checkpoint-10").exists()
    assert json.loads((out / "metrics.json").read_text())["train"]["global_step"] == 9
    assert (out / "model.safetensors").read_bytes() == before["model.safetensors"]

    # A recipe whose labels differ from the run's is named before anything loads.
    other = {**recipe, "labels": {0: "bad", 1: "good"}}
    differs = r"checkpoint-9: the run being resumed has labels \['negative', 'positive'\], the recipe now \['bad', "
    with pytest.raises(HftkError, match=differs):
        train(other, resume=True)

    # A second run into the folder while one holds it stops at once, naming the holder.
    held = rf"^{out}: in use by hftk train \(pid {os.getpid()} on "
    with locked(out / LOCK, "hftk train"), pytest.raises(HftkError, match=held):
        train(recipe, resume=True)


@pytest.mark.slow  # 50 s, kept out of make test for CI's 30 minutes (make test-slow runs it)
def test_pair_regression_and_multi_label_train_on_real_data(tmp_path, caplog):
    """Each problem type runs end to end and reports its own metrics."""
    stsb = {
        "train": head(DATA / "en/stsb/train.tsv", tmp_path / "stsb_train.tsv", 600),
        "validation": head(DATA / "en/stsb/dev.tsv", tmp_path / "stsb_dev.tsv", 200),
    }
    result = train(
        {
            "task": "text-classification",
            "model": MINILM,
            "problem_type": "regression",
            "data": {
                **{k: str(v) for k, v in stsb.items()},
                "columns": {"text": "sentence1", "text_pair": "sentence2", "label": "score"},
            },
            "training": {"num_train_epochs": 2, "learning_rate": 1e-4, "per_device_train_batch_size": 16},
            "output_dir": str(tmp_path / "stsb"),
        }
    )
    # MiniLM was trained for sentence similarity: a few hundred pairs give a strong correlation.
    assert result.metrics["eval"]["eval_pearson"] > 0.6
    # A pair model given single texts answers, but says that it missed the second sentence.
    pair_model = Predictor(tmp_path / "stsb")
    with caplog.at_level(logging.WARNING, logger="hftk"):
        pair_model.predict([{"sentence1": "A man plays a guitar.", "sentence2": "A man plays music."}])
        assert "trained on sentence pairs" not in caplog.text
        pair_model.predict(["A man plays a guitar."])
    assert "the model was trained on sentence pairs, but <inputs> has no 'sentence2' column" in caplog.text

    names = (DATA / "en/goemotions/labels.txt").read_text().split()
    go = {
        "train": head(DATA / "en/goemotions/train.tsv", tmp_path / "go_train.tsv", 800, header=False),
        "validation": head(DATA / "en/goemotions/dev.tsv", tmp_path / "go_dev.tsv", 200, header=False),
    }
    result = train(
        {
            "task": "text-classification",
            "model": MINILM,
            "problem_type": "multi_label",
            "labels": dict(enumerate(names)),
            "threshold": 0.3,
            "data": {
                **{k: str(v) for k, v in go.items()},
                "column_names": ["text", "label", "id"],
                "label_delimiter": ",",
            },
            "training": {"num_train_epochs": 1, "learning_rate": 1e-4},
            "output_dir": str(tmp_path / "go"),
        }
    )
    assert {"eval_f1_micro", "eval_f1_macro", "eval_exact_match"} <= set(result.metrics["eval"])
    preds = Predictor(tmp_path / "go").predict(["Thank you so much, this is wonderful!"])
    assert set(preds[0]) == {"labels", "scores"} and len(preds[0]["scores"]) == 28


# ------------------------------------------------------------------------------------ SIGKILL and resume

STEPS, SAVE_EVERY, KILL_AFTER = 20, 4, 12  # 8 steps per epoch: killed in epoch 2, resumed through epoch 3


def _hftk_train(recipe: Path, out: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["OMP_NUM_THREADS"] = "1"  # on a small shared CPU, spinning OpenMP threads cost more than they give
    cmd = [sys.executable, "-m", "hftk", "train", str(recipe), "--output", str(out), *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-4000:]


def _losses(out: Path) -> list[tuple[int, float]]:
    state = json.loads((out / "checkpoints" / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    return [(h["step"], h["loss"]) for h in state["log_history"] if "loss" in h]


@pytest.mark.slow  # 74 s, kept out of make test for CI's 30 minutes; test_resume_continues_from_last_checkpoint stays
def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path):
    rows = {
        "train": head(DATA / "en/sst2/train.tsv", tmp_path / "train.tsv", 128),
        "validation": head(DATA / "en/sst2/dev.tsv", tmp_path / "dev.tsv", 48),
    }
    training = {
        "max_steps": STEPS,
        "per_device_train_batch_size": 16,
        "eval_strategy": "steps",
        "eval_steps": SAVE_EVERY,
        "save_strategy": "steps",
        "save_steps": SAVE_EVERY,
        "logging_steps": 2,
    }
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(sst2_recipe(rows, tmp_path / "unused", training=training)))

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    _finish(_hftk_train(recipe, whole))

    proc = _hftk_train(recipe, killed)
    deadline = time.monotonic() + 600
    target = killed / "checkpoints" / f"checkpoint-{KILL_AFTER}"
    while checkpoint_problem(target) is not None:  # poll until the checkpoint is complete, then kill at once
        assert proc.poll() is None, proc.communicate()[1][-4000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "config.json").exists()  # no final model from the killed run

    # The kill lands wherever it lands; add a checkpoint cut short as a kill mid-save leaves one: every file
    # but trainer_state.json, the last one Trainer writes. Resuming from it would crash or go wrong.
    last = last_complete_checkpoint(killed / "checkpoints")
    assert last is not None and KILL_AFTER <= int(last.name.split("-")[1]) < STEPS
    partial = killed / "checkpoints" / f"checkpoint-{int(last.name.split('-')[1]) + SAVE_EVERY}"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(last, partial)
    (partial / "trainer_state.json").unlink()

    _finish(_hftk_train(recipe, killed, "--resume"))

    a = json.loads((whole / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    print("uninterrupted:", a["train"], a["eval"], "\nresumed:", b["train"], b["eval"])
    assert b["train"]["resumed_from_step"] == int(last.name.split("-")[1])
    assert a["train"]["global_step"] == b["train"]["global_step"] == STEPS
    assert b["eval"]["eval_accuracy"] == a["eval"]["eval_accuracy"]
    assert b["eval"]["eval_loss"] == pytest.approx(a["eval"]["eval_loss"], abs=1e-5)
    # The same optimizer steps on the same batches: every logged training loss agrees, before and after the kill.
    assert [s for s, _ in _losses(killed)] == [s for s, _ in _losses(whole)]
    assert [x for _, x in _losses(killed)] == pytest.approx([x for _, x in _losses(whole)], abs=1e-5)

    assert not partial.exists() or checkpoint_problem(partial) is None  # removed, or rewritten whole
    for out in (whole, killed):
        assert not (out / ".staging").exists()
        assert not list(out.rglob("training_args.bin"))  # no pickled arguments, in checkpoints either
    assert Predictor(killed).predict(["A gorgeous, witty film."])[0]["label"] in ("negative", "positive")


# ------------------------------------------------------------------------------------ --overwrite


def test_overwrite_replaces_the_old_run_and_an_interrupted_finish_resumes(tmp_path):
    rows = {"train": head(DATA / "en/sst2/train.tsv", tmp_path / "train.tsv", 32), "validation": None}
    out = tmp_path / "run"
    tiny_model(out, ["x", "y", "z"], seed=0)
    (out / "model.safetensors").rename(out / "model-00001-of-00001.safetensors")  # an old sharded layout
    (out / "model.safetensors.index.json").write_text('{"weight_map": {}}')
    (out / "checkpoints" / "checkpoint-99").mkdir(parents=True)
    (out / "predictions.jsonl").write_text("mine\n")
    training = {"max_steps": 2, "save_steps": 2, "save_strategy": "steps", "eval_strategy": "no"}
    recipe = sst2_recipe(rows, out, training={**training, "load_best_model_at_end": False})
    recipe["data"].pop("validation")
    train(recipe, overwrite=True)
    names = {p.name for p in out.iterdir()}
    assert "checkpoint-99" not in {p.name for p in (out / "checkpoints").glob("*")}
    assert not {"model-00001-of-00001.safetensors", "model.safetensors.index.json"} & names  # stale shards gone
    assert "predictions.jsonl" in names
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "negative", "1": "positive"}
    assert Predictor(out).predict(["fine"])[0]["label"] in ("negative", "positive")

    # Killed after the old weights went and before the new ones arrived: nothing loads, --resume finishes it.
    (out / "model.safetensors").unlink()
    killed = r"no model weights \(model.safetensors\): the training run was stopped .* --resume"
    with pytest.raises(HftkError, match=killed):
        Predictor(out).predict(["fine"])
    result = train(recipe, resume=True)
    assert (result.start_step, result.global_step) == (2, 2)
    assert Predictor(out).predict(["fine"])[0]["label"] in ("negative", "positive")

    # keep_checkpoints: false deletes them once the model is in place.
    train({**recipe, "keep_checkpoints": False}, overwrite=True)
    assert not (out / "checkpoints").exists() and (out / "model.safetensors").is_file()

    # checkpoints/ a link to another disk: --overwrite removes the link, never what it points to.
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "checkpoint-7").mkdir(parents=True)
    (elsewhere / "checkpoint-7" / "keep.txt").write_text("theirs")
    (out / "checkpoints").symlink_to(elsewhere, target_is_directory=True)
    train(recipe, overwrite=True)
    assert (elsewhere / "checkpoint-7" / "keep.txt").read_text() == "theirs"
    assert not (out / "checkpoints").is_symlink() and (out / "checkpoints" / "checkpoint-2").is_dir()


def test_every_file_a_run_writes_gets_the_users_umask(tmp_path):
    """Model, checkpoints, run files and predictions as any tool's under the user's umask (safetensors and
    temporary files would be 0600, a folder made by mkdtemp 0700: unreadable to the user's group)."""
    rows = {"train": head(DATA / "en/sst2/train.tsv", tmp_path / "train.tsv", 64)}
    rows["validation"] = head(DATA / "en/sst2/dev.tsv", tmp_path / "dev.tsv", 16)
    out = tmp_path / "run"
    training = {"max_steps": 2, "save_strategy": "steps", "save_steps": 1, "eval_strategy": "no"}
    recipe = sst2_recipe(rows, out, training={**training, "load_best_model_at_end": False}, keep_checkpoints=True)
    old = os.umask(0o027)
    try:
        train(recipe)
        cli("predict", out, "--input", rows["validation"], "--output", out / "predictions.jsonl")
    finally:
        os.umask(old)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.relative_to(out).as_posix() for p in files} >= {
        "model.safetensors", "predictions.jsonl", "metrics.json", "checkpoints/checkpoint-2/model.safetensors"
    }  # fmt: skip
    assert {p.relative_to(out).as_posix(): p.stat().st_mode & 0o777 for p in files} == {
        p.relative_to(out).as_posix(): 0o640 for p in files
    }
    assert {p.stat().st_mode & 0o777 for p in [out, *out.rglob("*")] if p.is_dir()} == {0o750}
