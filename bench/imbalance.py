"""Class imbalance on GoEmotions (28 emotions, multi-label): dev macro- and micro-F1 with the fixed threshold 0.5,
with thresholds tuned on validation (per label, and one global), and with balanced class weights, each model
trained with the same budget: the recipe as shipped (recipes/goemotions-minilm.yaml), `--steps` steps of batch 32
(default 1125: its 3 epochs of the 12,000 training rows).

Thresholds tuned on the data they are scored on flatter the scores, so dev is split in two halves (seeded): the
runs validate and tune on half A, and every row is scored on half B, except the one row that shows the optimism
(tuned and scored on half A). One model per training setting; the threshold rows reuse its outputs.

    python bench/imbalance.py [--steps 1125] [--workdir D]

Prints a JSON line per configuration, then a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hftk  # noqa: E402

RECIPE = ROOT / "recipes/goemotions-minilm.yaml"
DEV = ROOT / "data/en/goemotions/dev.tsv"


def split_dev(workdir: Path) -> tuple[Path, Path]:
    """Dev in two halves of shuffled lines (seed 0): A to validate and tune on, B to score on."""
    lines = DEV.read_text(encoding="utf-8").splitlines(keepends=True)
    random.Random(0).shuffle(lines)
    half = len(lines) // 2
    a, b = workdir / "dev_a.tsv", workdir / "dev_b.tsv"
    a.write_text("".join(lines[:half]), encoding="utf-8")
    b.write_text("".join(lines[half:]), encoding="utf-8")
    return a, b


def train(name: str, steps: int, dev_a: Path, workdir: Path, **sets: Any) -> tuple[Path, float]:
    out = workdir / name
    overrides = {
        "data.validation": str(dev_a),
        "threshold": "tuned",
        "keep_checkpoints": False,
        "training.max_steps": steps,
        "training.eval_strategy": "no",
        "training.save_strategy": "no",
        "training.load_best_model_at_end": False,
        "training.disable_tqdm": True,
        **sets,
    }
    result = hftk.train(RECIPE, overrides=overrides, output_dir=out, overwrite=True)
    return out, result.metrics["train"]["train_runtime"]


class Scored:
    """A trained model's outputs on one dev half, computed once and scored under any thresholds."""

    def __init__(self, predictor: hftk.Predictor, path: Path) -> None:
        self.task = predictor.task
        self.records = self.task.read(path)
        self.features = self.task.encode(self.records, with_targets=True)
        self.outputs = predictor.run(self.features)

    def score(self, thresholds: Any) -> dict[str, float]:
        self.task.thresholds = None if thresholds is None else list(thresholds)  # None: 0.5 for every label
        return self.task.score(self.records, self.features, self.outputs)

    def tuned(self, how: str) -> list[float]:
        """Thresholds tuned on these outputs as `threshold_tuning: how` tunes them after training."""
        self.task.recipe = self.task.recipe.model_copy(update={"threshold_tuning": how})
        self.task.tune(self.records, self.features, self.outputs)
        return self.task.thresholds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1125)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hftk-bench-imbalance-"))
    workdir.mkdir(parents=True, exist_ok=True)
    dev_a, dev_b = split_dev(workdir)
    rows = []

    def report(training: str, thresholds: str, scored_on: str, metrics: dict[str, float], seconds: float) -> None:
        row = {
            "training": training,
            "thresholds": thresholds,
            "scored_on": scored_on,
            "f1_macro": round(metrics["f1_macro"], 4),
            "f1_micro": round(metrics["f1_micro"], 4),
            "train_s": round(seconds, 1),
            "steps": args.steps,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    for training, sets in (("plain BCE", {}), ("class_weights: balanced", {"class_weights": "balanced"})):
        out, seconds = train(training.split()[0].rstrip(":"), args.steps, dev_a, workdir, **sets)
        predictor = hftk.Predictor(out)
        saved = predictor.task.thresholds  # per label, tuned on half A by `hftk train`
        a, b = Scored(predictor, dev_a), Scored(predictor, dev_b)
        report(training, "0.5", "dev B", b.score(None), seconds)
        report(training, "tuned per label on A", "dev B", b.score(saved), seconds)
        if not sets:
            report(training, "tuned global on A", "dev B", b.score(a.tuned("global")), seconds)
            report(training, "tuned per label on A", "dev A (optimistic)", a.score(saved), seconds)

    print("\n| training | thresholds | scored on | macro-F1 | micro-F1 |\n|---|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['training']} | {r['thresholds']} | {r['scored_on']} | {r['f1_macro']:.3f} | {r['f1_micro']:.3f} |")


if __name__ == "__main__":
    main()
