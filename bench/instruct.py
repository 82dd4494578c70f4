"""Instruction tuning learns, offline: completion-only loss vs loss on every token, same steps and seed.

No real decoder weights are available here, so a seeded GPT-2 (the fixture's tokenizer, `--layers` x `--width`) is
trained from scratch on a synthetic instruction task whose answers are computed: "copy", "reverse" or "rotate" 3 words
(single tokens of the fixture's vocabulary), e.g. prompt "reverse: cat dog sun\\nanswer:", completion
" sun dog cat". Two runs of `hftk train`, identical but for `train_on_prompt` (false: the loss sees the answer and
its EOS; true: every token), then hftk's generation evaluation on held-out prompts (greedy): answer exact match,
chrF, and the share of answers that end with EOS within max_new_tokens (`stopped`).

    python bench/instruct.py [--steps 1000] [--train 4000] [--eval 200] [--words 12] [--layers 2] [--width 128]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Each answer word's place follows from its place in the prompt (3 words, always): a 2-layer model learns that in
# minutes, where content-based rules (sort) and lists of varying length did not in 1,000 steps (bench/RESULTS.md).
OPS = {"copy": lambda ws: ws, "reverse": lambda ws: ws[::-1], "rotate": lambda ws: [*ws[1:], ws[0]]}


def vocabulary(fixture: Path, n: int, rng: random.Random) -> list[str]:
    """n words that are one token each (a leading-space BPE entry of 3+ lower-case letters)."""
    vocab = json.loads((fixture / "vocab.json").read_text(encoding="utf-8"))
    words = sorted(t[1:] for t in vocab if t.startswith("Ġ") and t[1:].isalpha() and t[1:].islower() and len(t) > 3)
    return rng.sample(words, n)


def examples(words: list[str], n: int, rng: random.Random, *, unlike: list[dict] = ()) -> list[dict[str, str]]:
    """n rows of 3 words; none with the prompt of a row in `unlike` (held-out prompts are never trained on)."""
    held_out = {r["prompt"] for r in unlike}
    rows = []
    while len(rows) < n:
        op = rng.choice(sorted(OPS))
        ws = rng.sample(words, 3)
        row = {"prompt": f"{op}: {' '.join(ws)}\nanswer:", "completion": " " + " ".join(OPS[op](ws))}
        if row["prompt"] not in held_out:
            rows.append(row)
    return rows


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def model(out: Path, layers: int, width: int) -> Path:
    """The fixture's tokenizer with a seeded GPT-2 of the given size (the fixture's own is 2 x 64)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from hftk.testing.fixtures import build_gpt2_fixture

    build_gpt2_fixture(out)
    base = GPT2Config.from_pretrained(out)
    config = GPT2Config(
        vocab_size=base.vocab_size,
        n_positions=base.n_positions,
        n_embd=width,
        n_layer=layers,
        n_head=max(1, width // 32),
        bos_token_id=base.bos_token_id,
        eos_token_id=base.eos_token_id,
    )
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(out, safe_serialization=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--eval", type=int, default=200)
    parser.add_argument("--words", type=int, default=12)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    import torch

    from hftk import train

    torch.set_num_threads(1)  # the machine is shared: one thread keeps the two runs' conditions alike
    tmp = Path(tempfile.mkdtemp(prefix="hftk-instruct-"))
    fixture = model(tmp / "gpt2", args.layers, args.width)
    rng = random.Random(args.seed)
    words = vocabulary(fixture, args.words, rng)
    dev = examples(words, args.eval, rng)
    dev_file = write(tmp / "dev.jsonl", dev)
    train_file = write(tmp / "train.jsonl", examples(words, args.train, rng, unlike=dev))
    recipe = {
        "task": "causal-lm",
        "model": str(fixture),
        "data": {"train": str(train_file), "validation": str(dev_file), "shape": "completion", "cache": False},
        "max_length": 64,
        "seed": args.seed,
        "generation": {"max_new_tokens": 12},
        "generation_eval": {"samples": args.eval},
        "training": {
            "max_steps": args.steps,
            "learning_rate": args.lr,
            "warmup_steps": args.steps // 10,
            "per_device_train_batch_size": args.batch,
            "per_device_eval_batch_size": 64,
            "eval_strategy": "no",
            "save_strategy": "no",
            "logging_steps": max(1, args.steps // 10),
        },
    }
    rows = []
    for on_prompt in (False, True):
        start = time.perf_counter()
        result = train({**recipe, "train_on_prompt": on_prompt}, output_dir=tmp / f"run-{on_prompt}")
        m = result.metrics["eval"]
        rows.append(
            {
                "loss on": "every token (train_on_prompt: true)" if on_prompt else "answer only (default)",
                "exact match": m["eval_exact_match"],
                "chrF": m["eval_chrf"],
                "ROUGE-L": m["eval_rougeL"],
                "ends with EOS": m["eval_stopped"],
                "minutes": (time.perf_counter() - start) / 60,
            }
        )
    print(
        f"\n{args.steps} steps x batch {args.batch}, lr {args.lr}, seed {args.seed}; GPT-2 {args.layers} x "
        f"{args.width} (fixture tokenizer); {args.train} training / {args.eval} held-out prompts, {args.words} words\n"
    )
    head = list(rows[0])
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" if h == "loss on" else "---:" for h in head) + "|")
    for r in rows:
        print("| " + " | ".join(v if isinstance(v, str) else f"{v:.3f}" for v in r.values()) + " |")
    a, b = rows
    for name in ("exact match", "ends with EOS"):
        ratio = f"{a[name] / b[name]:.2f}x" if b[name] else f"{a[name]:.3f} vs 0"
        print(f"{name}: answer-only / every-token = {ratio}")


if __name__ == "__main__":
    main()
