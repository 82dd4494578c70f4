"""bf16 against fp32 on this CPU: what training and prediction gain in speed and lose in quality.

Training (each run a child `hftk train`, one after another, nothing else running):
  - SST-2: the demo recipe (recipes/sst2-minilm.yaml) in fp32 and bf16, `--seeds` seeds each: dev accuracy, and
    train_runtime as a ratio fp32 / bf16 per seed (the same recipe, data and seed);
  - CoNLL-2003 NER and SQuAD, `--steps` steps each (short runs), fp32 and bf16: dev F1.
Prediction, in this process: each fp32-trained model predicts its dev set in fp32 and in bf16 (autocast);
agreement = share of SST-2 labels, of NER entity spans (start, end, type; matched / union) and of QA answer
texts that are the same.

    python bench/precision.py [--seeds 3] [--steps 300] [--only sst2,ner,qa] [--workdir D]

CoNLL-2003 is not redistributed: the NER part reads ../shared/data/en/conll2003 (skipped when absent).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean, stdev
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {
    "sst2": ("recipes/sst2-minilm.yaml", "eval_accuracy", ROOT / "data/en/sst2/dev.tsv"),
    "ner": ("recipes/conll2003-minilm.yaml", "eval_f1", ROOT.parent / "shared/data/en/conll2003/valid.txt"),
    "qa": ("recipes/squad-minilm.yaml", "eval_f1", ROOT / "data/en/squad/validation.json"),
}


def train(case: str, precision: str, seed: int, out: Path, steps: int | None, reuse: bool) -> dict[str, Any]:
    recipe, metric, _ = RECIPES[case]
    if reuse and (out / "metrics.json").is_file():  # a run of an earlier invocation (--reuse)
        return _row(case, seed, metric, json.loads((out / "metrics.json").read_text()), 0.0)
    sets = {"precision": precision, "seed": seed, "keep_checkpoints": "false"}
    if steps:
        sets |= {"training.max_steps": steps, "training.eval_strategy": "no", "training.save_strategy": "no"}
        sets |= {"training.load_best_model_at_end": "false"}
    cmd = [sys.executable, "-m", "hftk", "train", recipe, "--output", str(out), "--overwrite"]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{case} {precision} seed {seed} failed:\n{proc.stderr[-2000:]}")
    return _row(case, seed, metric, json.loads((out / "metrics.json").read_text()), time.perf_counter() - start)


def _row(case: str, seed: int, metric: str, metrics: dict[str, Any], wall: float) -> dict[str, Any]:
    row = {
        "case": case,
        "precision": metrics["device"]["precision"],
        "seed": seed,
        "metric": metric,
        "value": metrics["eval"][metric],
        "train_runtime_s": metrics["train"]["train_runtime"],
        "wall_s": round(wall, 1),
    }
    print(json.dumps(row), flush=True)
    return row


def agreement(case: str, model: Path) -> tuple[float, int]:
    """(share of predictions bf16 gives the same as fp32, how many compared) on the case's dev set."""
    from hftk import Predictor

    _, _, dev = RECIPES[case]
    fp32, bf16 = Predictor(model, precision="fp32"), Predictor(model, precision="bf16")
    bf16.model = fp32.model  # the same weights; bf16 runs them under autocast
    records = fp32.read(dev)
    a, b = fp32.predict(records), bf16.predict(records)
    if case == "sst2":
        return sum(x["label"] == y["label"] for x, y in zip(a, b)) / len(a), len(a)
    if case == "ner":
        spans_a = {(i, e["start"], e["end"], e["type"]) for i, r in enumerate(a) for e in r["entities"]}
        spans_b = {(i, e["start"], e["end"], e["type"]) for i, r in enumerate(b) for e in r["entities"]}
        union = spans_a | spans_b
        return len(spans_a & spans_b) / max(1, len(union)), len(union)
    return sum(x["answer"] == y["answer"] for x, y in zip(a, b)) / len(a), len(a)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3, help="SST-2 seeds per precision")
    ap.add_argument("--steps", type=int, default=300, help="training steps of the NER and QA runs")
    ap.add_argument("--only", default="sst2,ner,qa", help="cases to run, comma-separated")
    ap.add_argument("--workdir", type=Path, help="where the models go (default: a temp folder)")
    ap.add_argument("--reuse", action="store_true", help="keep the runs already in --workdir (their metrics.json)")
    args = ap.parse_args()
    import torch

    from hftk.models.loading import cpu_computes_bf16

    work = args.workdir or Path(tempfile.mkdtemp(prefix="precision-"))
    cases = [c for c in args.only.split(",") if c]
    if "ner" in cases and not RECIPES["ner"][2].exists():
        print(f"# {RECIPES['ner'][2]} not here: NER skipped")
        cases.remove("ner")
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"bf16 in hardware: {cpu_computes_bf16()}; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    agree: dict[str, tuple[float, int]] = {}
    for case in cases:
        seeds = range(1, args.seeds + 1) if case == "sst2" else range(1, 2)
        steps = None if case == "sst2" else args.steps
        for seed in seeds:
            for precision in ("fp32", "bf16"):
                rows.append(train(case, precision, seed, work / f"{case}-{precision}-{seed}", steps, args.reuse))
        agree[case] = agreement(case, work / f"{case}-fp32-1")
        print(json.dumps({"case": case, "agreement": agree[case][0], "compared": agree[case][1]}), flush=True)

    print("\n| task | metric | fp32 | bf16 | bf16 − fp32 | train time fp32 / bf16 | predictions agreeing |")
    print("|---|---|---|---|---:|---:|---:|")
    for case in cases:
        values = {p: [r["value"] for r in rows if r["case"] == case and r["precision"] == p] for p in ("fp32", "bf16")}
        runtime = {(r["precision"], r["seed"]): r["train_runtime_s"] for r in rows if r["case"] == case}
        speed = [runtime["fp32", s] / runtime["bf16", s] for p, s in runtime if p == "fp32" and ("bf16", s) in runtime]

        def shown(v: list[float]) -> str:
            return f"{mean(v):.4f} ± {stdev(v):.4f}" if len(v) > 1 else f"{v[0]:.4f}"

        diff = mean(values["bf16"]) - mean(values["fp32"])
        share, n = agree[case]
        metric = rows[[r["case"] for r in rows].index(case)]["metric"]
        print(
            f"| {case} | {metric} | {shown(values['fp32'])} | {shown(values['bf16'])} | {diff:+.4f} | "
            f"{mean(speed):.2f}× | {share:.2%} of {n} |"
        )
    print("\nGoals (issue 16): SST-2 within 0.5 pt, NER and QA F1 within 1 pt; agreement >= 99.5 % (SST-2 labels,")
    print("NER spans), >= 98 % (QA answers); training >= 1.6x the fp32 run.")


if __name__ == "__main__":
    main()
