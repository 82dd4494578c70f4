"""Long documents: truncate, head_tail and windows (mean, max; each window's loss or the document's) on IMDb reviews.

Each method trains MiniLM (recipes/imdb-minilm.yaml: the 1,600 shipped train reviews) for `--steps` optimizer steps,
batch 16, seed 42, at each `--lengths` max_length; then its Predictor (what `hftk predict` and `hftk serve` run)
predicts the dev reviews, timed in this process. Printed per method: dev accuracy on every review and on the reviews
longer than the window (untruncated tokens > max_length), training seconds, and prediction milliseconds per review
with its ratio to truncation's at the same max_length. `--with-512` adds truncation at 512 (the seeds' way).

    python bench/long_documents.py [--steps 150] [--lengths 128,256] [--dev-rows 500] [--with-512] [--out F]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hftk  # noqa: E402

METHODS = {
    "truncate": {"long_inputs": "truncate"},
    "head_tail": {"long_inputs": "head_tail"},
    "windows (mean)": {"long_inputs": "windows", "windows.pooling": "mean"},
    "windows (max)": {"long_inputs": "windows", "windows.pooling": "max"},
    # windows trained on each document's pooled logits (windows.loss: document) instead of each window's own
    "document loss (mean)": {"long_inputs": "windows", "windows.pooling": "mean", "windows.loss": "document"},
    "document loss (max)": {"long_inputs": "windows", "windows.pooling": "max", "windows.loss": "document"},
}


def dev_rows(n: int) -> list[dict[str, str]]:
    with open(ROOT / "data/en/imdb/dev.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    pos = [r for r in rows if r["label"] == "pos"][: n // 2]
    neg = [r for r in rows if r["label"] == "neg"][: n - n // 2]
    return pos + neg


def run(method: str, max_length: int, steps: int, rows: list[dict[str, str]], work: Path) -> dict[str, Any]:
    sets = {
        **METHODS[method],
        "max_length": max_length,
        "seed": 42,
        "data.validation": None,
        "keep_checkpoints": False,
        "training.max_steps": steps,
        "training.per_device_train_batch_size": 16,
        "training.eval_strategy": "no",
        "training.save_strategy": "no",
        "training.load_best_model_at_end": False,
        "training.disable_tqdm": True,
    }
    out = work / f"{list(METHODS).index(method)}-{max_length}"
    start = time.perf_counter()
    hftk.train(ROOT / "recipes/imdb-minilm.yaml", overrides=sets, output_dir=out, overwrite=True)
    trained = time.perf_counter() - start
    predictor = hftk.Predictor(out)
    texts = [r["review"] for r in rows]
    predictor.predict(texts[:32])  # warm: the model loaded, the first batches' allocations made
    start = time.perf_counter()
    predicted = predictor.predict(texts)
    seconds = time.perf_counter() - start
    lengths = [len(ids) for ids in predictor.tokenizer(texts)["input_ids"]]
    right = [p["label"] == r["label"] for p, r in zip(predicted, rows)]
    long = [ok for ok, n in zip(right, lengths) if n > max_length]
    return {
        "method": method,
        "max_length": max_length,
        "accuracy": sum(right) / len(right),
        "accuracy_long": sum(long) / len(long) if long else None,
        "long_reviews": len(long),
        "train_seconds": round(trained, 1),
        "predict_ms_per_review": round(1000 * seconds / len(rows), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--lengths", default="128,256")
    parser.add_argument("--dev-rows", type=int, default=500)
    parser.add_argument("--with-512", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated methods or first words of them (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here too")
    args = parser.parse_args()
    rows = dev_rows(args.dev_rows)
    methods = [m for m in METHODS if not args.only or m.split()[0] in args.only.split(",") or m in args.only]
    cases = [(m, int(n)) for n in args.lengths.split(",") for m in methods]
    if args.with_512:
        cases.append(("truncate", 512))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for method, max_length in cases:
            row = run(method, max_length, args.steps, rows, Path(tmp))
            base = next((r for r in results if r["method"] == "truncate" and r["max_length"] == max_length), None)
            base = row if method == "truncate" else base
            row["predict_vs_truncate"] = (
                round(row["predict_ms_per_review"] / base["predict_ms_per_review"], 2) if base else None
            )
            results.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{args.steps} steps, batch 16, seed 42, {len(rows)} dev reviews\n")
    head = "| max_length | method | dev accuracy | on reviews longer than the window | train s | predict ms/review |"
    print(head + " ÷ truncate |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        long = f"{r['accuracy_long']:.4f} ({r['long_reviews']})" if r["accuracy_long"] is not None else "-"
        print(
            f"| {r['max_length']} | {r['method']} | {r['accuracy']:.4f} | {long} | {r['train_seconds']} | "
            f"{r['predict_ms_per_review']} | {r['predict_vs_truncate']} |"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
