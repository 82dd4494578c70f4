"""Preference tuning (DPO) end to end on the GPT-2 fixture and Dolly pairs: the loss hftk trains and evaluates with
is DPO's as computed by hand, a few steps raise the reward margin, and the output folder is a text-generation model."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from hftk import HftkError, evaluate, load_recipe, train
from hftk.tasks import get_task

from ..helpers import DATA, ROOT, assert_resume_is_bit_exact, cli

PAIRS = DATA / "en/dolly_preference"


def short_pairs(name: str, n: int, tok, limit: int) -> list[dict]:
    """The first n pairs whose prompt and longer answer fit in `limit` tokens (nothing truncated)."""
    rows = [json.loads(line) for line in (PAIRS / f"{name}.jsonl").read_text().splitlines()]

    def size(r: dict) -> int:
        return len(tok(r["instruction"] + r["context"] + max(r["chosen"], r["rejected"], key=len))["input_ids"])

    return [r for r in rows if size(r) < limit - 40][:n]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def sequence_logp(model, prompt_ids: list[int], answer_ids: list[int]) -> float:
    """log p(answer | prompt), token by token, from the model alone."""
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + answer_ids])).logits[0].float()
    logp = logits.log_softmax(-1)
    start = len(prompt_ids)
    return float(sum(logp[start + i - 1, t] for i, t in enumerate(answer_ids)))


def test_dpo_trains_on_dolly_pairs_with_the_loss_computed_by_hand(gpt2_fixture, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    from hftk.features.instructions import render_prompt

    tok = AutoTokenizer.from_pretrained(gpt2_fixture)
    rows = short_pairs("train", 8, tok, 96)
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    overrides = {
        "model": str(gpt2_fixture),
        "data.train": str(data),
        "data.validation": str(data),  # the training pairs: their margin must grow
        "max_length": 96,
        "beta": 0.5,
        "generation": {"max_new_tokens": 4},
        "training.num_train_epochs": 3,
        "training.learning_rate": 1e-3,
        "training.per_device_train_batch_size": 4,
        "training.per_device_eval_batch_size": 64,  # one batch: eval_loss is the mean over every pair
    }
    result = train(ROOT / "recipes/dpo-gpt2.yaml", overrides=overrides, output_dir=tmp_path / "run")
    start, end = result.metrics["eval_start"], result.metrics["eval"]
    # Before any step the policy is its reference: every reward 0, the loss log 2.
    assert start["eval_loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert start["eval_reward_margin"] == pytest.approx(0, abs=1e-4)
    assert end["eval_reward_margin"] > 0.5 and end["eval_reward_accuracy"] >= 0.75, end
    assert end["eval_rewards_chosen"] > end["eval_rewards_rejected"]

    # The same numbers by hand: each answer's log-probability (its tokens and EOS) under the trained model and the
    # reference (the fixture), the DPO loss and rewards on them.
    out = result.output_dir
    recipe = load_recipe(out / "recipe.yaml")
    policy, reference = (AutoModelForCausalLM.from_pretrained(p).eval() for p in (out, gpt2_fixture))
    margins, losses, chosen = [], [], []
    for r in rows:
        prompt = tok(render_prompt(recipe.prompt_template, {"prompt": r["instruction"], "context": r["context"]}))
        c, j = (tok(r[k])["input_ids"] + [tok.eos_token_id] for k in ("chosen", "rejected"))
        reward = [
            0.5 * (sequence_logp(policy, prompt["input_ids"], a) - sequence_logp(reference, prompt["input_ids"], a))
            for a in (c, j)
        ]
        margins.append(reward[0] - reward[1])
        chosen.append(reward[0])
        losses.append(-math.log(1 / (1 + math.exp(-margins[-1]))))
    assert end["eval_loss"] == pytest.approx(np.mean(losses), rel=1e-4)
    assert end["eval_reward_margin"] == pytest.approx(np.mean(margins), rel=1e-4)
    assert end["eval_rewards_chosen"] == pytest.approx(np.mean(chosen), rel=1e-3, abs=1e-5)
    assert end["eval_reward_accuracy"] == np.mean(np.array(margins) > 0)

    # hftk evaluate on the same pairs: the DPO metrics of training's final evaluation (the reference log-probs from
    # the recipe's reference model, as in training: the fixture, not the trained folder), and the greedy answers of
    # the same seeded sample scored against the chosen answers, with their report.
    metrics = evaluate(out, data, report=tmp_path / "report")
    for name in ("loss", "rewards_chosen", "rewards_rejected", "reward_accuracy", "reward_margin"):
        assert metrics[name] == pytest.approx(end[f"eval_{name}"], rel=1e-4, abs=1e-6), name
    for name in ("rougeL", "exact_match", "chrf", "stopped", "generated"):
        assert metrics[name] == pytest.approx(end[f"eval_{name}"]), name
    assert metrics["generated"] == len(rows)
    assert "Lowest rougeL" in (tmp_path / "report" / "report.html").read_text()

    card = (out / "README.md").read_text()
    assert "DPO loss" in card and "beta 0.5" in card and f"`{gpt2_fixture}` (the model it started from)" in card

    # A causal-LM folder: hftk predict answers the prompts as the text-generation pipeline does.
    asked = write_jsonl(tmp_path / "asked.jsonl", rows[:3])
    cli("predict", str(out), "--input", str(asked), "--output", str(tmp_path / "answers.jsonl"))
    answers = [json.loads(line)["generated_text"] for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    pipe = pipeline("text-generation", model=str(out), device="cpu")
    prompts = [
        render_prompt(recipe.prompt_template, {"prompt": r["instruction"], "context": r["context"]}) for r in rows[:3]
    ]
    assert answers == [pipe(p, return_full_text=False)[0]["generated_text"] for p in prompts]


def test_dpo_resume_is_bit_exact(gpt2_fixture, tmp_path, own_cache):
    """A run resumed from a mid-epoch checkpoint recomputes the reference log-probs and draws the same pairs in the
    same batches: the same losses and weights as the run it continues."""
    from transformers import AutoTokenizer

    rows = short_pairs("train", 12, AutoTokenizer.from_pretrained(gpt2_fixture), 96)
    overrides = {
        "model": str(gpt2_fixture),
        "data.train": str(write_jsonl(tmp_path / "pairs.jsonl", rows)),
        "data.validation": None,
        "max_length": 96,
        "training.learning_rate": 1e-3,
        "training.per_device_train_batch_size": 2,
    }
    assert_resume_is_bit_exact(ROOT / "recipes/dpo-gpt2.yaml", overrides, tmp_path)


@pytest.mark.parametrize(
    ("loss_type", "at_start"), [("sigmoid", math.log(2)), ("ipo", 1 / (4 * 0.1**2)), ("hinge", 1.0)]
)
def test_each_loss_type_starts_where_its_formula_puts_a_zero_margin(gpt2_fixture, tmp_path, loss_type, at_start):
    """The recipe's loss_type reaches the loss: with the policy equal to its reference (no step yet) the margin is 0,
    and sigmoid gives log 2, ipo 1/(4·beta²), hinge 1; a policy that prefers the chosen answer more lowers each."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hftk.data.records import Records
    from hftk.features.preference import answer_logps

    tok = AutoTokenizer.from_pretrained(gpt2_fixture)
    rows = short_pairs("dev", 3, tok, 128)
    recipe = load_recipe(
        {
            "task": "preference",
            "model": str(gpt2_fixture),
            "data": {"train": "x.jsonl", "columns": {"prompt": "instruction"}},
            "loss_type": loss_type,
        }
    )
    task = get_task("preference")(recipe, tok)
    records = Records("pairs.jsonl", rows, columns=list(rows[0]))
    features = task.encode(records, with_targets=True)
    pairs = [{k: features[k][i] for k in features} for i in range(len(rows))]
    model = AutoModelForCausalLM.from_pretrained(gpt2_fixture).eval()
    batch = task.collator()(pairs)
    with torch.no_grad():
        batch["reference"] = answer_logps(model, batch)
        loss, _ = task.training_loss()(model, batch)
        assert float(loss) == pytest.approx(at_start, rel=1e-5)
        batch["reference"][:, 0] -= 1.0  # the chosen answers: 1 nat likelier under the policy than the reference
        better, _ = task.training_loss()(model, batch)
    assert float(better) < float(loss)


def test_preference_recipe_fields(gpt2_fixture):
    base = {"task": "preference", "model": "gpt2", "data": {"train": "x.jsonl"}}
    recipe = load_recipe(base)
    assert (recipe.beta, recipe.loss_type, recipe.reference_model) == (0.1, "sigmoid", None)
    for bad, needle in [
        ({"beta": 0}, "beta"),
        ({"loss_type": "kto"}, "loss_type"),
        ({"train_on_prompt": True}, "train_on_prompt"),
        ({"data": {"train": "x.jsonl", "shape": "text"}}, "shape"),
        ({"data": {"train": "x.jsonl", "shape": "chat"}, "prompt_template": "{prompt}"}, "prompt_template"),
    ]:
        with pytest.raises(HftkError, match=needle):
            load_recipe({**base, **bad})


def test_chat_prompts_encode_as_chat_tuning_does_and_train(gpt2_fixture, tmp_path):
    """data.shape: chat: the prompt is a messages column (the turns before the answer), each answer its assistant
    turn: a pair's two sequences are the ones causal-lm's chat shape trains on for those chats, and prediction
    continues the chat template's generation prompt, as the pipeline does."""
    from transformers import AutoTokenizer, pipeline

    from hftk.data.records import Records

    tok = AutoTokenizer.from_pretrained(gpt2_fixture)
    rows = [
        {
            "messages": [
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": r["instruction"]},
            ],
            "chosen": r["chosen"],
            "rejected": r["rejected"],
        }
        for r in short_pairs("train", 8, tok, 96)
    ]
    base = {"model": str(gpt2_fixture), "data": {"train": "x.jsonl", "shape": "chat"}, "max_length": 96}
    dpo = get_task("preference")(load_recipe({"task": "preference", **base}), tok)
    sft = get_task("causal-lm")(load_recipe({"task": "causal-lm", **base}), AutoTokenizer.from_pretrained(gpt2_fixture))
    pairs = dpo.encode(Records("pairs.jsonl", rows, columns=list(rows[0])), with_targets=True)
    for answer in ("chosen", "rejected"):
        chats = [{"messages": [*r["messages"], {"role": "assistant", "content": r[answer]}]} for r in rows]
        chat = sft.encode(Records("chats.jsonl", chats, columns=["messages"]), with_targets=True)
        assert pairs[f"{answer}_input_ids"] == chat["input_ids"] and pairs[f"{answer}_labels"] == chat["labels"]

    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    overrides = {
        **{k: v for k, v in base.items() if k != "data"},
        "data": {"train": str(data), "validation": str(data), "shape": "chat", "columns": {}},
        "prompt_template": None,
        "generation": {"max_new_tokens": 4},
        "training.max_steps": 4,
        "training.learning_rate": 1e-3,
        "training.per_device_train_batch_size": 4,
        "training.per_device_eval_batch_size": 64,
    }
    result = train(ROOT / "recipes/dpo-gpt2.yaml", overrides=overrides, output_dir=tmp_path / "run")
    assert result.metrics["eval_start"]["eval_loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert result.metrics["eval"]["eval_reward_margin"] > 0, result.metrics["eval"]
    cli("predict", str(result.output_dir), "--input", str(data), "--output", str(tmp_path / "answers.jsonl"))
    answers = [json.loads(line)["generated_text"] for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    pipe = pipeline("text-generation", model=str(result.output_dir), device="cpu")
    assert answers == [pipe(r["messages"], return_full_text=False)[0]["generated_text"] for r in rows]
