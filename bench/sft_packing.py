"""Instruction batches: length-grouped padding (hftk's default) vs packing, on Dolly with the GPT-2 fixture.

(1) Correctness: two examples packed into one row with reset position ids (transformers'
    `DataCollatorWithFlattening`, no attention mask), against each run alone, under every attention implementation
    GPT-2 offers on this machine. The second example's logits differ when it can attend to the first.
(2) Padding share and speed: Dolly's training examples (../shared's 3,000 rows) exactly as
    `hftk train recipes/sft-gpt2-dolly.yaml` encodes them (the fixture's tokenizer, max_length 256, loss on the
    responses), batches of `--batch` drawn (a) as Trainer's length-grouped sampler draws them (hftk's default for
    instruction data), padded to their longest row, (b) in random order, padded, (c) packed: the same random
    batches flattened into one row each (no padding). Speed: forward + backward + AdamW step of the fixture (fp32,
    one torch thread), real tokens per second, over the same
    `--steps` batches per way; the machine is shared, so ways alternate batch by batch.

    python bench/sft_packing.py [--batch 8] [--steps 40]
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
DOLLY = ROOT / "../shared/data/en/dolly/train.jsonl"  # all 3,000 rows; the recipe's data/ holds a 200-row sample


def leak_check(fixture: Path) -> dict[str, float]:
    """Largest logit difference of the second packed example from it alone, per attention implementation."""
    import torch
    from transformers import AutoModelForCausalLM, DataCollatorWithFlattening

    a, b = list(range(10, 30)), list(range(40, 53))
    batch = DataCollatorWithFlattening()([{"input_ids": a}, {"input_ids": b}])
    out = {}
    for impl in ("eager", "sdpa", "flash_attention_2", "flex_attention"):
        try:
            model = AutoModelForCausalLM.from_pretrained(fixture, attn_implementation=impl).eval()
        except (ImportError, ValueError) as e:
            out[impl] = f"not available ({str(e).splitlines()[0][:120]})"
            continue
        with torch.no_grad():
            packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0, len(a) :]
            alone = model(input_ids=torch.tensor([b])).logits[0]
        out[impl] = float((packed - alone).abs().max())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--train", default=str(DOLLY if DOLLY.is_file() else ROOT / "data/en/dolly/train.jsonl"))
    args = parser.parse_args()

    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from hftk import load_recipe
    from hftk.tasks import get_task
    from hftk.testing.fixtures import build_gpt2_fixture

    torch.set_num_threads(1)
    fixture = build_gpt2_fixture(tempfile.mkdtemp(prefix="hftk-sft-packing-"))
    for impl, diff in leak_check(fixture).items():
        print(
            f"packed example vs alone, {impl}: " + (f"max |logit diff| {diff:.3g}" if isinstance(diff, float) else diff)
        )

    recipe = load_recipe(
        ROOT / "recipes/sft-gpt2-dolly.yaml", {"model": str(fixture), "max_length": 256, "data.train": args.train}
    )
    tok = AutoTokenizer.from_pretrained(fixture)
    task = get_task("causal-lm")(recipe, tok)
    features = task.encode(task.read(recipe.data.train).whole(), with_targets=True)
    ids, labels = features["input_ids"], features["labels"]
    lengths = [len(x) for x in ids]
    n = args.batch * args.steps
    generator = torch.Generator().manual_seed(recipe.seed)
    grouped = list(LengthGroupedSampler(args.batch, lengths=lengths, generator=generator))[:n]
    shuffled = torch.randperm(len(ids), generator=torch.Generator().manual_seed(recipe.seed)).tolist()[:n]
    ways = {
        "length-grouped, padded (default)": ([grouped[i : i + args.batch] for i in range(0, n, args.batch)], False),
        "random order, padded": ([shuffled[i : i + args.batch] for i in range(0, n, args.batch)], False),
        "random order, packed (one row per batch)": (
            [shuffled[i : i + args.batch] for i in range(0, n, args.batch)],
            True,
        ),
    }

    def tensors(batch: list[int], packed: bool) -> dict[str, torch.Tensor]:
        if packed:
            row = [t for i in batch for t in ids[i]]
            lab = [t for i in batch for t in [-100, *labels[i][1:]]]  # no example predicts the next one's start
            pos = [p for i in batch for p in range(len(ids[i]))]
            return {
                "input_ids": torch.tensor([row]),
                "labels": torch.tensor([lab]),
                "position_ids": torch.tensor([pos]),
            }
        width = max(lengths[i] for i in batch)
        x = torch.full((len(batch), width), tok.eos_token_id)
        y = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, i in enumerate(batch):
            x[r, : lengths[i]], y[r, : lengths[i]], mask[r, : lengths[i]] = (
                torch.tensor(ids[i]),
                torch.tensor(labels[i]),
                1,
            )
        return {"input_ids": x, "labels": y, "attention_mask": mask}

    stats = {name: {"real": 0, "slots": 0, "seconds": 0.0} for name in ways}
    models = {}
    for name in ways:
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(fixture, attn_implementation="sdpa").train()
        models[name] = (model, torch.optim.AdamW(model.parameters(), lr=1e-4))
    for step in range(args.steps):
        for name, (batches, packed) in ways.items():
            batch = tensors(batches[step], packed)
            model, optimizer = models[name]
            start = time.perf_counter()
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            stats[name]["seconds"] += time.perf_counter() - start
            stats[name]["real"] += sum(lengths[i] for i in batches[step])
            stats[name]["slots"] += batch["input_ids"].numel()

    print(f"\n{args.train} ({len(ids)} examples, median {int(np.median(lengths))} tokens, max {max(lengths)}), "
          f"batch {args.batch}, {args.steps} batches per way, GPT-2 fixture, sdpa, fp32, 1 thread\n")  # fmt: skip
    print("| batches | padding share | real tokens/s | vs default |")
    print("|---|---:|---:|---:|")
    base = stats["length-grouped, padded (default)"]
    for name, s in stats.items():
        speed = s["real"] / s["seconds"]
        print(
            f"| {name} | {1 - s['real'] / s['slots']:.1%} | {speed:,.0f} | "
            f"{speed / (base['real'] / base['seconds']):.2f}x |"
        )


if __name__ == "__main__":
    main()
