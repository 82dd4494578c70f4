"""Data-parallel training with torchrun and accelerate launch: 2 CPU processes on the gloo backend.

The 2-process run must train like the 1-process run with the same global batch size (16 = 8 per process x 2),
each process must train on its own half of the data, and only rank 0 may write the output folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hftk.files import checkpoint_problem

from .helpers import DATA, MINILM, ROOT, head, sst2_recipe

BIN = Path(sys.executable).parent  # torchrun and accelerate live next to the interpreter, not on PATH
PROBE = ROOT / "tests" / "ddp_probe.py"
TRAIN_ROWS = 256  # 16 optimizer steps of 16 examples


def _env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),  # this checkout's hftk, wherever the launcher starts
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",  # two processes on a small CPU: one thread each
        **extra,
    }


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ddp")
    rows = {
        "train": head(DATA / "en/sst2/train.tsv", tmp / "train.tsv", TRAIN_ROWS),
        "validation": head(DATA / "en/sst2/dev.tsv", tmp / "dev.tsv", 64),
    }
    recipe = sst2_recipe(rows, tmp / "unused", training={"per_device_train_batch_size": 16, "logging_steps": 4})
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _probed_run(launcher: list[str], recipe: Path, out: Path, probe: Path, *args: str) -> dict:
    cmd = [*launcher, str(PROBE), "train", str(recipe), "--output", str(out), *args]
    env = _env(
        HFTK_PROBE_DIR=str(probe),
        HFTK_PROBE_WATCH=str(out),
        HFTK_PROBE_DELAY_OTHER_RANKS="3",
        HF_DATASETS_CACHE=str(probe / "datasets"),  # each run starts cold
    )
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {"metrics": json.loads((out / "metrics.json").read_text()), "stdout": proc.stdout, "stderr": proc.stderr}


def test_two_processes_train_like_one_on_half_the_data_each(recipe_file, tmp_path):
    one = _probed_run([sys.executable], recipe_file, tmp_path / "one", tmp_path / "probe1")
    two = _probed_run(
        [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", "29533"],
        recipe_file,
        tmp_path / "two",
        tmp_path / "probe2",
        "--set",
        "training.per_device_train_batch_size=8",
    )
    m1, m2 = one["metrics"], two["metrics"]
    print("1 process:", m1["train"], m1["eval"], "\n2 processes:", m2["train"], m2["eval"])
    assert m1["device"]["world_size"] == 1 and m2["device"]["world_size"] == 2
    assert m2["device"]["distributed"] == "MULTI_CPU"  # DDP on gloo
    assert m1["train"]["global_step"] == m2["train"]["global_step"] == TRAIN_ROWS // 16

    # Each process trained on its own half; together exactly what the single process trained on.
    seen1 = json.loads((tmp_path / "probe1" / "rank0.json").read_text())["seen"]
    ranks = [json.loads((tmp_path / "probe2" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(seen1) == TRAIN_ROWS
    assert [len(r["seen"]) for r in ranks] == [TRAIN_ROWS // 2, TRAIN_ROWS // 2]
    assert not set(ranks[0]["seen"]) & set(ranks[1]["seen"])
    assert sorted(ranks[0]["seen"] + ranks[1]["seen"]) == sorted(seen1)

    # Same global batches, so the same training up to each process's own dropout masks.
    assert m2["train"]["train_loss"] == pytest.approx(m1["train"]["train_loss"], abs=0.02)
    assert m2["eval"]["eval_loss"] == pytest.approx(m1["eval"]["eval_loss"], abs=0.03)

    # Only rank 0 wrote the output folder; it holds one complete model and a checkpoint with both RNG states.
    assert ranks[1]["writes"] == [], ranks[1]["writes"]
    assert any(w.endswith("metrics.json") for w in ranks[0]["writes"])
    out = tmp_path / "two"
    assert {"config.json", "model.safetensors", "metrics.json", "recipe.yaml", "README.md"} <= {
        p.name for p in out.iterdir()
    }
    assert not (out / ".staging").exists()
    (checkpoint,) = (out / "checkpoints").iterdir()
    assert checkpoint_problem(checkpoint) is None
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in checkpoint.iterdir()}
    assert two["stdout"].count("model saved to") == 1  # one report, from rank 0

    # The data was tokenised once: rank 0 built the features, rank 1 memory-mapped them from the cache.
    train = recipe_file.parent / "train.tsv"
    assert f"hftk[rank 0]: {train}: {TRAIN_ROWS} rows tokenised" in two["stderr"]
    assert f"hftk[rank 1]: {train}: {TRAIN_ROWS} rows from the cache" in two["stderr"]


@pytest.mark.slow
def test_accelerate_launch_with_a_config_file(recipe_file, tmp_path):
    """`accelerate launch --config_file CFG -m hftk train`: the launcher's config passes through to Trainer.

    accelerate's MULTI_CPU launcher needs mpirun; its MULTI_GPU launcher (torch.distributed.run) starts the two
    processes here, and hftk's device policy (no GPU: use_cpu) puts them on CPU with gloo. FSDP and DeepSpeed
    configs take the same path on GPUs; on a CPU accelerate runs them as plain DDP, so they are not tested here.
    """
    config = tmp_path / "accelerate.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "compute_environment": "LOCAL_MACHINE",
                "distributed_type": "MULTI_GPU",
                "num_processes": 2,
                "num_machines": 1,
                "machine_rank": 0,
                "main_process_port": 29534,
                "mixed_precision": "no",
                "gpu_ids": "all",
            }
        )
    )
    out = tmp_path / "run"
    cmd = [str(BIN / "accelerate"), "launch", "--config_file", str(config), "-m", "hftk", "train", str(recipe_file)]
    cmd += ["--output", str(out), "--set", "training.per_device_train_batch_size=8", "--set", "training.max_steps=4"]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["device"]["world_size"] == 2 and metrics["device"]["distributed"] == "MULTI_CPU"
    assert metrics["train"]["global_step"] == 4
    assert proc.stdout.count("model saved to") == 1
    assert {"config.json", "model.safetensors"} <= {p.name for p in out.iterdir()}


def test_two_processes_train_on_whole_documents_and_score_each_review_once(tmp_path):
    """Long IMDb reviews read in windows, trained per document (`windows.loss: document`) by 2 processes: the
    evaluation gathered from both ranks scores each review once, from all its windows: the saved model's accuracy
    in one process (`hftk evaluate`) is the one metrics.json reports."""
    import csv

    import hftk

    def reviews(split: str, n: int) -> Path:
        path = tmp_path / f"{split}.csv"
        with open(DATA / f"en/imdb/{split}.csv", newline="", encoding="utf-8") as f:
            rows = [row for _, row in zip(range(n), csv.DictReader(f))]
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, ["review", "label"])
            writer.writeheader()
            writer.writerows(rows)
        return path

    recipe = {
        "task": "text-classification",
        "model": MINILM,
        "data": {
            "train": str(reviews("train", 48)),
            "validation": str(reviews("dev", 37)),
            "columns": {"text": "review"},
        },
        "labels": ["neg", "pos"],
        "max_length": 64,
        "long_inputs": "windows",
        "windows": {"stride": 16, "max_windows": 3, "loss": "document"},
        "training": {
            "max_steps": 3,
            "per_device_train_batch_size": 8,
            "learning_rate": 1e-4,
            "eval_strategy": "steps",
            "eval_steps": 3,
            "save_strategy": "no",
            "load_best_model_at_end": False,
        },
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    cmd = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", "29535", "-m", "hftk", "train", str(path)]
    cmd += ["--output", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["device"]["world_size"] == 2 and metrics["train"]["global_step"] == 3
    one = hftk.evaluate(out, tmp_path / "dev.csv")
    assert metrics["eval"]["eval_accuracy"] == pytest.approx(one["accuracy"], abs=1e-9)
    assert round(one["accuracy"] * 37) == pytest.approx(one["accuracy"] * 37, abs=1e-6)  # of 37 reviews, not windows
