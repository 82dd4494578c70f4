"""`hftk tune` on SST-2 against the shipped recipe's defaults (recipes/sst2-minilm.yaml), same data and budget.

SST-2's train rows are shuffled (seed 0) and cut in two: `--rows` rows to train on and `--held-out` rows that
neither the search nor the default run ever sees. Both train one epoch on the same rows and pick their best
checkpoint on SST-2 dev, as the shipped recipe does; the search also selects its best trial on dev. So dev is the
selection set, and the held-out rows are the honest score: a search that only won on dev by luck shows it there.

The search (`--trials`, default 8, median pruning at every evaluation) is the shipped recipe's `search:` block:
learning rate, warm-up, weight decay and the schedule; epochs, batch and max_length stay as shipped, so every
trial costs at most one run. The wall time of the whole search is printed as a multiple of the default run's,
measured in this process.

    python bench/tune.py [--rows 8000] [--held-out 2000] [--trials 8] [--workdir D]

Prints a JSON line per model, then a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hftk  # noqa: E402
from hftk.runs.tune import tune  # noqa: E402

RECIPE = ROOT / "recipes/sst2-minilm.yaml"
TRAIN = ROOT / "data/en/sst2/train.tsv"
DEV = ROOT / "data/en/sst2/dev.tsv"


def split_train(workdir: Path, rows: int, held_out: int) -> tuple[Path, Path]:
    """Train's lines shuffled (seed 0): the first `held_out` set aside, the next `rows` to train on."""
    header, *lines = TRAIN.read_text(encoding="utf-8").splitlines(keepends=True)
    if rows + held_out > len(lines):
        raise SystemExit(f"--rows {rows} + --held-out {held_out} exceed SST-2's {len(lines)} train rows")
    random.Random(0).shuffle(lines)
    aside, train = workdir / "held_out.tsv", workdir / "train.tsv"
    aside.write_text(header + "".join(lines[:held_out]), encoding="utf-8")
    train.write_text(header + "".join(lines[held_out : held_out + rows]), encoding="utf-8")
    return train, aside


def score(name: str, model: Path, aside: Path, seconds: float, extra: dict[str, Any]) -> dict[str, Any]:
    dev = json.loads((model / "metrics.json").read_text())["eval"]["eval_accuracy"]
    held = hftk.evaluate(model, aside)["accuracy"]
    n = sum(1 for _ in aside.open()) - 1
    row = {"model": name, "dev_accuracy": dev, "held_out_accuracy": held, "held_out_se": _se(held, n)}
    row |= {"seconds": round(seconds, 1), **extra}
    print(json.dumps(row), flush=True)
    return row


def _se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=8000, help="train rows both runs learn from (default 8000)")
    ap.add_argument("--held-out", type=int, default=2000, help="train rows set aside, never seen (default 2000)")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hftk-bench-tune-"))
    workdir.mkdir(parents=True, exist_ok=True)
    train, aside = split_train(workdir, args.rows, args.held_out)
    steps = math.ceil(args.rows / 32)  # the shipped batch of 32, one epoch
    every = max(1, steps // 10)  # ten evaluations a run (the shipped recipe: 5), so the pruner can stop a trial sooner
    common = {
        "data.train": str(train),
        "data.validation": str(DEV),
        "training.eval_steps": every,
        "training.save_steps": every,
        "training.disable_tqdm": True,
    }

    start = time.perf_counter()
    hftk.train(RECIPE, overrides=common, output_dir=workdir / "defaults", overwrite=True)
    one_run = time.perf_counter() - start
    rows = [score("shipped defaults", workdir / "defaults", aside, one_run, {"runs": 1.0})]

    start = time.perf_counter()
    result = tune(RECIPE, trials=args.trials, overrides=common, output_dir=workdir / "study", overwrite=True)
    searched = time.perf_counter() - start
    print(result.table(), flush=True)
    states = json.loads((workdir / "study" / "tune.json").read_text())["states"]
    extra = {"runs": round(searched / one_run, 2), "states": states, "best": result.best_params}
    rows.append(score(f"hftk tune, {args.trials} trials", workdir / "study" / "best", aside, searched, extra))

    print(f"\nSST-2: {args.rows} train rows, {args.held_out} held out, dev {DEV.name} selects; workdir {workdir}\n")
    print("| model | dev accuracy (selection) | held-out accuracy (± se) | wall time | × one run |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        held = f"{r['held_out_accuracy']:.4f} ± {r['held_out_se']:.4f}"
        print(f"| {r['model']} | {r['dev_accuracy']:.4f} | {held} | {r['seconds']:.0f} s | {r['runs']:.2f} |")
    gain = rows[1]["held_out_accuracy"] - rows[0]["held_out_accuracy"]
    print(f"\nheld-out gain of the tuned recipe: {gain:+.4f}; search time {rows[1]['runs']:.2f}× one run (goal ≤ 3×)")


if __name__ == "__main__":
    main()
