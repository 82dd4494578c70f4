"""The JGLUE suite on hftk: five recipes trained and scored on dev, printed as JGLUE's table beside published numbers.

Each task is its shipped recipe (recipes/jsts-ja.yaml, jnli-ja.yaml, jsquad-ja.yaml, jcqa-ja.yaml, chabsa-ja.yaml)
with `model` replaced by MODEL. With the grid (the default), each recipe's `search:` block, JGLUE's learning rate
{5e-5, 3e-5, 2e-5} x epochs {3, 4}, runs whole through `hftk tune` (6 runs per task, no pruning) and the task's
score is its best run's on dev, as JGLUE picks its hyper-parameters on dev; the run is chosen by the task's main
metric (JSTS: Pearson, JSQuAD: F1, the others: accuracy) and its other metrics are that run's. Without the grid, one
run per task with the recipe's defaults (learning rate 5e-5, 3 epochs).

    python bench/jglue.py cl-tohoku/bert-base-japanese-v3             # online: JGLUE's grid, 30 full runs (use a GPU)
    python bench/jglue.py cl-tohoku/bert-base-japanese-v3 --no-grid   # one run per task
    python bench/jglue.py path/to/local/checkpoint --tasks jsts,jnli --output runs/jglue/mine
    python bench/jglue.py fixture                                     # offline plumbing: the tiny Tohoku-format fixture

`fixture` builds hftk's tiny Tohoku-format BERT (hftk.testing.fixtures.build_bert_japanese_fixture: random weights,
a 4,000 word vocabulary) and implies --quick and, unless --grid is given, --no-grid. --quick: `--rows` rows of each
split (written to OUTPUT/data), `--steps` steps of batch 8, no checkpoints. It checks that every recipe trains and
scores end to end; its numbers mean nothing.

Not JGLUE's numbers even with the real model: JNLI trains on JSICK's 5,000 pairs (JNLI's train split is not in the
repository), JSQuAD on 4,057 JaQuAD questions (likewise), and chABSA stands in for MARC-ja, which JGLUE no longer
distributes. Prints the table; writes every score, run and setting to OUTPUT/jglue.json (or --json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hftk  # noqa: E402
from hftk.config.reading import parse_overrides, read_recipe  # noqa: E402

FIXTURE = "fixture"


@dataclass(frozen=True)
class Task:
    name: str  # JGLUE's column
    recipe: str  # in recipes/
    metrics: tuple[tuple[str, str], ...]  # (JGLUE's name, hftk's eval key)
    jglue: tuple[float, ...] | None  # JGLUE's README, Tohoku BERT base (cl-tohoku/bert-base-japanese-v2), dev
    v3: tuple[float, ...] | None  # cl-tohoku/bert-base-japanese-v3, dev, as retrieva-jp measured it (see REFERENCES)


TASKS = (
    Task(
        "JSTS",
        "jsts-ja.yaml",
        (("Pearson", "eval_pearson"), ("Spearman", "eval_spearman")),
        (0.909, 0.868),
        (0.914, 0.876),
    ),
    Task("JNLI", "jnli-ja.yaml", (("acc", "eval_accuracy"),), (0.899,), (0.906,)),
    Task("JSQuAD", "jsquad-ja.yaml", (("EM", "eval_exact_match"), ("F1", "eval_f1")), (0.871, 0.941), (0.878, 0.946)),
    Task("JCommonsenseQA", "jcqa-ja.yaml", (("acc", "eval_accuracy"),), (0.808,), (0.849,)),
    # In place of MARC-ja (binary sentiment, accuracy), which has no number for this data. metrics.json and the JSON
    # file also hold macro-F1 (eval_f1_macro).
    Task("chABSA", "chabsa-ja.yaml", (("acc", "eval_accuracy"),), None, None),
)
REFERENCES = {
    "jglue": "Tohoku BERT base (JGLUE README: bert-base-japanese-v2)",
    "v3": "bert-base-japanese-v3 (retrieva-jp/bert-1.3b model card)",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a hub id (online), a local checkpoint folder, or `fixture` (offline plumbing)")
    parser.add_argument(
        "--grid",
        action=argparse.BooleanOptionalAction,
        help="JGLUE's grid per task, or one run (default: the grid; one run for fixture)",
    )
    parser.add_argument("--quick", action="store_true", help="few rows and steps: plumbing only (implied by fixture)")
    parser.add_argument("--rows", type=int, default=48, help="--quick: rows (QA: questions) of each split")
    parser.add_argument("--steps", type=int, default=4, help="--quick: training steps of each run")
    parser.add_argument("--tasks", help=f"comma-separated, of {', '.join(t.name for t in TASKS)} (default: all)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    parser.add_argument("--output", type=Path, help="default runs/jglue/<model>")
    parser.add_argument("--json", type=Path, help="default OUTPUT/jglue.json")
    parser.add_argument("--overwrite", action="store_true", help="replace runs already in OUTPUT")
    args = parser.parse_args(argv)

    tasks = pick(args.tasks)
    quick = args.quick or args.model == FIXTURE
    grid = args.grid if args.grid is not None else args.model != FIXTURE
    out = args.output or ROOT / "runs" / "jglue" / args.model.strip("/").replace("/", "--")
    out.mkdir(parents=True, exist_ok=True)
    model = args.model
    if model == FIXTURE:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        from hftk.testing.fixtures import build_bert_japanese_fixture

        model = str(build_bert_japanese_fixture(out / "fixture-bert-ja"))
    overrides = {"model": model, "keep_checkpoints": False, **parse_overrides(args.set)}

    results: dict[str, Any] = {}
    for task in tasks:
        sets = dict(overrides)
        if quick:
            sets |= quick_overrides(task, out / "data" / task.name, args.rows, args.steps)
        start = time.perf_counter()
        results[task.name] = run(task, sets, out / task.name, grid=grid, overwrite=args.overwrite)
        results[task.name]["seconds"] = round(time.perf_counter() - start, 1)
        print(f"{task.name}: {show(task, results[task.name]['eval'])} ({results[task.name]['seconds']} s)", flush=True)

    setting = "best of JGLUE's grid on dev" if grid else "one run at the recipe's learning rate and epochs"
    if quick:
        setting += f"; quick: {args.rows} rows, {args.steps} steps, plumbing only"
    print()
    print(table(tasks, results, f"{args.model} ({setting})"))
    report = {
        "model": args.model,
        "grid": grid,
        "quick": quick,
        "overrides": {k: v for k, v in overrides.items() if k != "model"},
        "tasks": results,
        "published": {
            name: {t.name: dict(zip([m for m, _ in t.metrics], getattr(t, name) or ())) for t in tasks}
            for name in REFERENCES
        },
        "published_sources": REFERENCES,
    }
    path = args.json or out / "jglue.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\n{path}")
    return 0


def pick(names: str | None) -> list[Task]:
    if not names:
        return list(TASKS)
    by_name = {t.name.lower(): t for t in TASKS} | {t.recipe.split("-")[0]: t for t in TASKS}
    unknown = [n for n in names.split(",") if n.strip().lower() not in by_name]
    if unknown:
        raise SystemExit(f"--tasks: unknown {', '.join(unknown)}; choose from {', '.join(t.name for t in TASKS)}")
    return [by_name[n.strip().lower()] for n in names.split(",")]


def run(task: Task, sets: dict[str, Any], out: Path, *, grid: bool, overwrite: bool) -> dict[str, Any]:
    """One task: JGLUE's grid through `hftk tune` (every point run whole, the best on dev kept), or one run."""
    recipe = ROOT / "recipes" / task.recipe
    if not grid:
        result = hftk.train(recipe, overrides=sets, output_dir=out, overwrite=overwrite)
        return {"recipe": str(recipe), "output_dir": str(out), "eval": result.metrics["eval"]}
    from hftk.runs.tune import tune

    space = read_recipe(recipe).data["search"]
    points = math.prod(len(v["choices"]) for v in space.values())
    # No pruning: JGLUE runs every point of its grid to the end and compares them on dev.
    result = tune(recipe, trials=points, overrides=sets, output_dir=out, overwrite=overwrite, prune=False)
    best = json.loads((result.best_dir / "metrics.json").read_text(encoding="utf-8"))
    return {
        "recipe": str(recipe),
        "output_dir": str(out),
        "eval": best["eval"],
        "best_params": result.best_params,
        "trials": [{k: v for k, v in t.items() if v not in ("", None)} for t in result.trials],
    }


def quick_overrides(task: Task, folder: Path, rows: int, steps: int) -> dict[str, Any]:
    """The first `rows` rows of each split (written to `folder`), `steps` steps of batch 8, no evaluation or
    checkpoint before the end: the plumbing of every recipe, in seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    data = read_recipe(ROOT / "recipes" / task.recipe).data["data"]
    sets: dict[str, Any] = {
        f"data.{split}": str(head(Path(data[split]), folder / Path(data[split]).name, rows))
        for split in ("train", "validation")
    }
    return sets | {
        "data.cache": False,
        "training.max_steps": steps,
        "training.per_device_train_batch_size": 8,
        "training.per_device_eval_batch_size": 32,
        "training.eval_strategy": "no",
        "training.save_strategy": "no",
        "training.logging_steps": 1,
        "training.disable_tqdm": True,
    }


def head(src: Path, dst: Path, rows: int) -> Path:
    """The first `rows` rows of a data file: TSV (with its header), JSON Lines, or SQuAD JSON (whole paragraphs
    until `rows` questions)."""
    text = src.read_text(encoding="utf-8")
    if src.suffix == ".tsv":
        lines = text.splitlines(keepends=True)
        dst.write_text("".join(lines[: rows + 1]), encoding="utf-8")
        return dst
    try:
        doc = json.loads(text)
    except ValueError:  # JSON Lines (JGLUE's .json files are)
        doc = None
    if not (isinstance(doc, dict) and "data" in doc):
        dst.write_text("".join(text.splitlines(keepends=True)[:rows]), encoding="utf-8")
        return dst
    articles, n = [], 0
    for article in doc["data"]:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            if n >= rows:
                break
            paragraphs.append(paragraph)
            n += len(paragraph["qas"])
        if paragraphs:
            articles.append({**article, "paragraphs": paragraphs})
    dst.write_text(json.dumps({"data": articles}, ensure_ascii=False), encoding="utf-8")
    return dst


def show(task: Task, scores: dict[str, Any] | tuple[float, ...] | None) -> str:
    """A task's cell as JGLUE writes it: 0.909/0.868; — where there is no number."""
    if scores is None:
        return "—"
    values = scores if isinstance(scores, tuple) else tuple(scores[key] for _, key in task.metrics)
    return "/".join(f"{v:.3f}" for v in values)


def table(tasks: list[Task], results: dict[str, Any], label: str) -> str:
    """JGLUE's dev table: a column per task, its metric names under it, a row per model."""
    rows = [
        ["Model", *(t.name for t in tasks)],
        ["", *("/".join(m for m, _ in t.metrics) for t in tasks)],
        [label, *(show(t, results[t.name]["eval"]) for t in tasks)],
        [REFERENCES["jglue"], *(show(t, t.jglue) for t in tasks)],
        [REFERENCES["v3"], *(show(t, t.v3) for t in tasks)],
    ]
    lines = ["|" + "|".join(row) + "|" for row in rows]
    lines.insert(1, "|" + "|".join("---" for _ in rows[0]) + "|")
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except hftk.HftkError as e:  # a used output folder, a model not found offline...: hftk's message, not a traceback
        sys.exit("\n".join(f"jglue: error: {line}" for line in str(e).splitlines()))
