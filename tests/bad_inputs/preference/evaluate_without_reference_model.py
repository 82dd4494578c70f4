"""`hftk evaluate` on a DPO-trained folder whose reference model (the SFT model it started from) is no longer where
training found it: the rewards cannot be measured, and the line says how to point at it."""

from pathlib import Path

CASE = {
    "run": "evaluate dpo --data pairs.jsonl",
    "files": {
        "pairs.jsonl": '{"instruction": "Name a colour.", "chosen": "Blue.", "rejected": "A pear."}\n',
        # What training saved, cut to the fields evaluation reads: the SFT model, since moved.
        "dpo/recipe.yaml": "task: preference\nmodel: ./sft-gpt2\n"
        "data: {train: pairs.jsonl, columns: {prompt: instruction}}\n",
    },
    "expect": "reference model (what the rewards are measured against; where it is now: --set reference_model=PATH): "
    "./sft-gpt2: model directory not found",
}


def setup(folder: Path) -> None:
    from hftk.testing.fixtures import build_gpt2_fixture

    build_gpt2_fixture(folder / "dpo", vocab_size=300)
