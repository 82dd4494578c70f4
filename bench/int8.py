"""int8 ONNX exports: agreement with the fp32 model on held-out SST-2 rows, and speed against pipeline().

Variants of `hftk export --quantize int8`'s graph, each from the same fp32 export, in the same process:
per-tensor weights (what hftk shipped before), per-channel weights (what it ships), and per-channel with the
width-reducing MatMuls (feed-forward down-projections, heads) kept fp32 (its fallback below 99 % agreement).
Speed is the best of 5 passes over the held-out sentences, against pipeline(list, batch_size=32) and the fp32
export, interleaved.

    python bench/int8.py --model runs/sst2-minilm [--train-rows 8000]   # default: train on 8,000 rows first
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
HELD = range(30001, 31001)  # train.tsv data rows a model trained on the first 8,000 never saw


def trained(rows: int, tmp: Path) -> Path:
    import hftk
    from hftk.config.reading import read_recipe

    lines = (ROOT / "data/en/sst2/train.tsv").read_text().splitlines(keepends=True)
    (tmp / "train.tsv").write_text("".join(lines[: rows + 1]))
    where = {"data.train": str(tmp / "train.tsv"), "output_dir": str(tmp / "model")}
    return hftk.train(read_recipe(ROOT / "recipes/sst2-minilm.yaml", where)).output_dir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="an hftk SST-2 output folder (default: train one on --train-rows rows)")
    ap.add_argument("--train-rows", type=int, default=8000)
    args = ap.parse_args()
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic
    from transformers import pipeline

    from hftk import Predictor
    from hftk.inference.export import export

    tmp = Path(tempfile.mkdtemp())
    model = Path(args.model) if args.model else trained(args.train_rows, tmp)
    lines = (ROOT / "data/en/sst2/train.tsv").read_text().splitlines()
    texts = [lines[i].rsplit("\t", 1)[0] for i in HELD]
    base = tmp / "fp32"
    export(model, base, data=None)
    prepared = tmp / "prepared.onnx"
    quant_pre_process(str(base / "model.onnx"), str(prepared), skip_symbolic_shape=True)
    import onnx

    graph = onnx.load(str(prepared)).graph
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    narrowing = [
        n.name
        for n in graph.node
        if n.op_type == "MatMul" and len(s := shapes.get(n.input[1], ())) == 2 and s[0] > s[1]
    ]
    variants = {
        "per-tensor (before)": {"per_channel": False},
        "per-channel (shipped)": {"per_channel": True},
        "per-channel, down-projections fp32 (fallback)": {"per_channel": True, "nodes_to_exclude": narrowing},
    }
    predictors = {"onnx fp32": Predictor(base)}
    for i, (name, options) in enumerate(variants.items()):
        folder = tmp / f"int8-{i}"
        shutil.copytree(base, folder)
        quantize_dynamic(str(prepared), str(folder / "model.onnx"), weight_type=QuantType.QInt8, **options)
        manifest = json.loads((folder / "hftk-export.json").read_text())
        (folder / "hftk-export.json").write_text(json.dumps({**manifest, "precision": "int8"}))
        predictors[name] = Predictor(folder)
    expected = [r["label"] for r in Predictor(model, precision="fp32").predict(texts)]
    pipe = pipeline("text-classification", model=str(model), device="cpu")
    pipe(texts[:32], batch_size=32)
    for p in predictors.values():
        p.predict(texts[:32])
    best = {"pipeline(list, batch 32)": 0.0, **{k: 0.0 for k in predictors}}
    for _ in range(5):
        start = time.perf_counter()
        pipe(texts, batch_size=32)
        best["pipeline(list, batch 32)"] = max(
            best["pipeline(list, batch 32)"], len(texts) / (time.perf_counter() - start)
        )
        for name, p in predictors.items():
            start = time.perf_counter()
            p.predict(texts)
            best[name] = max(best[name], len(texts) / (time.perf_counter() - start))
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPU cores; {model}; {len(texts)} held-out rows")
    baseline = best["pipeline(list, batch 32)"]
    for name, speed in best.items():
        same = ""
        if name in predictors:
            agree = sum(r["label"] == e for r, e in zip(predictors[name].predict(texts), expected))
            same = f"  same labels as fp32 torch: {agree}/{len(texts)} ({agree / len(texts):.1%})"
        print(f"{name:48} {speed:7.1f} sentences/s  ×{speed / baseline:4.2f}{same}")
    print(f"{len(narrowing)} width-reducing MatMuls; goal: >= 99 % agreement at >= 4× pipeline(list, batch_size=32)")


if __name__ == "__main__":
    main()
