"""What a validation split costs a language model's run: peak memory and time, with and without one.

(a) hftk train recipes/mlm-domain-en.yaml on a 2 MB corpus (data/en/gutenberg paragraphs repeated, as
bench/data_scale.py builds it), batch 16, 2 steps, no validation; (b) the same with a 200-line validation file
(Gutenberg paragraphs: perplexity before training, at the end, and the final evaluation); (c) transformers'
run_mlm.py way with the same validation file: load_dataset("text"), group_texts into blocks, Trainer with
`preprocess_logits_for_metrics` (argmax) and accuracy, evaluated once at the end, eval batch 8 (its default).
Each run is a child process whose process tree's RSS is polled every 0.2 s (bench/data_scale.py's `run_child`).
The goal: (b) / (a) peak RSS at most 1.10.

    python bench/eval_memory.py [--mb 2] [--lines 200] [--batch 16] [--skip-baseline] [--causal] [--speed-only]

Then, in this process: the time to score the validation blocks the old way (the model's own loss over a whole
batch's logits) against `hftk.features.collators.nll_per_row`, alternated, as a ratio.

--causal adds the same pair for causal-lm on the tiny GPT-2 fixture (hftk.testing.fixtures, vocabulary 2,000: its logits
are small, so this checks the path rather than the size).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_scale import GB, MARK, MLM_RECIPE, ROOT, build_corpus, mlm_recipe, run_child


def validation_file(workdir: Path, lines: int) -> Path:
    """`lines` paragraphs of Austen's Emma from its end (the corpus repeats all of data/en/gutenberg)."""
    texts = [t.strip() for t in (ROOT / "data/en/gutenberg/austen_emma.txt").read_text().splitlines() if t.strip()]
    path = workdir / f"validation-{lines}.txt"
    path.write_text("\n".join(texts[-lines:]) + "\n", encoding="utf-8")
    return path


def baseline_child(corpus: str, validation: str, batch: str) -> None:
    """run_mlm.py's data path, Trainer and evaluation (argmax logits, accuracy of the masked tokens)."""
    from itertools import chain

    import numpy as np
    import transformers as tf
    from datasets import load_dataset

    from hftk.models.loading import resolve_model

    recipe = mlm_recipe()
    block, path = recipe["max_length"], resolve_model(recipe["model"])
    raw = load_dataset("text", data_files={"train": corpus, "validation": validation})
    tokenizer = tf.AutoTokenizer.from_pretrained(path)
    model = tf.AutoModelForMaskedLM.from_pretrained(path)

    def group_texts(examples):
        concatenated = {k: list(chain(*examples[k])) for k in examples}
        total = (len(concatenated[next(iter(examples))]) // block) * block
        return {k: [t[i : i + block] for i in range(0, total, block)] for k, t in concatenated.items()}

    def tokenize(examples):
        return tokenizer(examples["text"], return_special_tokens_mask=True)

    grouped = raw.map(tokenize, batched=True, remove_columns=["text"]).map(group_texts, batched=True)

    def preprocess_logits_for_metrics(logits, labels):
        return logits.argmax(dim=-1)

    def compute_metrics(pred):
        labels, preds = pred.label_ids.reshape(-1), pred.predictions.reshape(-1)
        mask = labels != -100
        return {"accuracy": float(np.mean(preds[mask] == labels[mask]))}

    out = tempfile.mkdtemp(prefix="eval_memory-baseline-")
    kwargs = {"max_steps": 2, "per_device_train_batch_size": int(batch), "use_cpu": True, "save_strategy": "no"}
    args = tf.TrainingArguments(out, report_to="none", **kwargs)
    collator = tf.DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    trainer = tf.Trainer(
        model,
        args,
        collator,
        grouped["train"],
        grouped["validation"],
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        preprocess_logits_for_metrics=preprocess_logits_for_metrics,
    )
    trainer.train()
    metrics = trainer.evaluate()
    shutil.rmtree(out, ignore_errors=True)
    print("\n" + MARK + json.dumps({"eval_loss": metrics["eval_loss"], "blocks": len(grouped["validation"])}))


def eval_speed(validation: Path, repeats: int = 3) -> None:
    """Seconds to score the validation blocks (batch 64, hftk's eval batch): the model's own loss over the whole
    batch's logits, as Trainer computed it, against hftk's `nll_per_row`; alternated, in this process."""
    import torch
    from transformers import AutoModelForMaskedLM

    from hftk.features.collators import BlockCollator, Masking, nll_per_row
    from hftk.features.packing import pack
    from hftk.models.loading import load_tokenizer, resolve_model

    recipe = mlm_recipe()
    path = resolve_model(recipe["model"])
    tok, model = load_tokenizer(path), AutoModelForMaskedLM.from_pretrained(path).eval()
    texts = [t for t in validation.read_text(encoding="utf-8").splitlines() if t.strip()]
    blocks = pack(tok, texts, recipe["max_length"])
    rows = [{k: blocks[k][i] for k in blocks} for i in range(len(blocks["input_ids"]))]
    collator = BlockCollator(tok, Masking(whole_word=True))
    with collator.seeded(0):
        batches = [collator(rows[i : i + 64]) for i in range(0, len(rows), 64)]
    times: dict[str, float] = {"model's loss": 0.0, "nll_per_row": 0.0}
    losses: dict[str, list[float]] = {k: [] for k in times}
    with torch.no_grad():
        for _ in range(repeats):
            for name in times:
                start = time.perf_counter()
                for batch in batches:
                    if name == "model's loss":
                        losses[name].append(model(**batch).loss.item())
                    else:
                        inputs = {k: v for k, v in batch.items() if k != "labels"}
                        nll = nll_per_row(model, inputs, batch["labels"], shift=False).sum(0)
                        losses[name].append(nll[0] / nll[1])
                times[name] += time.perf_counter() - start
    same = max(abs(a - b) for a, b in zip(*losses.values()))
    old, new = times["model's loss"], times["nll_per_row"]
    print(
        f"\nscoring {len(rows)} validation blocks x {repeats} (batch 64, in this process): the model's loss "
        f"{old:.1f} s, nll_per_row {new:.1f} s; nll_per_row / model's loss: {new / old:.2f}; "
        f"largest loss difference {same:.1e}"
    )


def causal_recipe(workdir: Path) -> Path:
    """recipes/mlm-domain-en.yaml's settings for causal-lm on the tiny GPT-2 fixture."""
    import yaml

    from hftk.testing.fixtures import build_gpt2_fixture

    model = build_gpt2_fixture(workdir / "gpt2")
    recipe = mlm_recipe()
    for key in ("whole_word_mask", "mlm_probability"):
        recipe.pop(key, None)
    recipe |= {"task": "causal-lm", "model": str(model)}
    path = workdir / "causal.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=2.0, help="corpus size in MB (1e6 bytes)")
    ap.add_argument("--lines", type=int, default=200, help="lines of the validation file")
    ap.add_argument("--batch", type=int, default=16, help="per_device_train_batch_size")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--causal", action="store_true", help="also causal-lm on the tiny GPT-2 fixture")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per child run")
    ap.add_argument("--speed-only", action="store_true", help="only the in-process scoring time")
    ap.add_argument("--baseline-child", "-c", nargs=3, metavar=("CORPUS", "VALIDATION", "BATCH"))
    args = ap.parse_args()
    if args.baseline_child:
        return baseline_child(*args.baseline_child)
    workdir = Path(tempfile.mkdtemp(prefix="eval_memory-"))
    corpus, validation = build_corpus(workdir, args.mb), validation_file(workdir, args.lines)
    if args.speed_only:
        eval_speed(validation)
        return shutil.rmtree(workdir, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load average {load:.1f}")
    print(f"# corpus {args.mb:g} MB, validation {args.lines} lines, batch {args.batch}, 2 steps")
    cache = workdir / "cache"
    cases: list[tuple[str, list[str]]] = []
    recipes = [("masked-lm", MLM_RECIPE)] + ([("causal-lm", str(causal_recipe(workdir)))] if args.causal else [])
    for name, recipe in recipes:
        base = [sys.executable, "-m", "hftk", "train", recipe, "--overwrite"]
        sets = {
            "data.train": corpus,
            "data.validation_fraction": "null",
            "training.max_steps": 2,
            "training.per_device_train_batch_size": args.batch,
            "training.logging_steps": 1,
            "training.save_strategy": "no",
            "training.load_best_model_at_end": "false",
        }
        for label, extra in (("no validation", {}), (f"{args.lines}-line validation", {"data.validation": validation})):
            out = workdir / f"out-{name}-{len(cases)}"
            flags = [a for k, v in {**sets, **extra, "output_dir": out}.items() for a in ("--set", f"{k}={v}")]
            cases.append((f"{name}, hftk, {label}", base + flags))
    if not args.skip_baseline:
        me = str(Path(__file__).resolve())
        cmd = [sys.executable, me, "-c", str(corpus), str(validation), str(args.batch)]
        cases.append((f"masked-lm, run_mlm.py's way, {args.lines}-line validation", cmd))
    rows: list[dict[str, Any]] = []
    for label, cmd in cases:
        cache.mkdir(exist_ok=True)  # warm after the first run: tokenising is not what is measured
        rows.append({"case": label, **run_child(cmd, cache, args.timeout)})
        print(json.dumps(rows[-1] | {"error": rows[-1].get("error", "")[-300:]}), flush=True)
    print("\n| case | status | peak RSS, tree (GB) | wall (s) |\n|---|---|---:|---:|")
    for r in rows:
        status = "ok" if r["rc"] == 0 and not r["timed_out"] else f"failed rc={r['rc']}"
        print(f"| {r['case']} | {status} | {r['peak_rss_gb']:.2f} | {r['wall_s']:.1f} |")
    for name, _ in recipes:
        pair = [r for r in rows if r["case"].startswith(f"{name}, hftk") and r["rc"] == 0]
        if len(pair) == 2:
            rss, wall = (pair[1][k] / pair[0][k] for k in ("peak_rss_gb", "wall_s"))
            print(f"\n{name}: with / without validation: peak RSS {rss:.3f} (goal <= 1.10), wall {wall:.2f}")
    eval_speed(validation)
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n(GB = {GB} bytes)")


if __name__ == "__main__":
    main()
