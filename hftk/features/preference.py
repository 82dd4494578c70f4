"""Preference pairs for DPO: batches of (chosen, rejected) answers, their log-probabilities and the DPO loss.

A pair is two instruction examples sharing a prompt (features/instructions.py encodes each: labels -100 except the
answer and its EOS). A batch stacks the chosen rows, then the rejected ones, so one forward pass scores both. A
sequence's log-probability is the sum of its answer tokens' log-probabilities; DPO compares the policy's with the
reference model's (Rafailov et al. 2023, as TRL's DPOTrainer computes it).
"""

from __future__ import annotations

from typing import Any, Literal

from hftk.features.instructions import IGNORED

LossType = Literal["sigmoid", "ipo", "hinge"]
PAIR_COLUMNS = ("chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels")


class PairCollator:
    """Pads a list of pairs into one batch of 2B rows (chosen first) on the right: `input_ids`, `attention_mask`,
    `answer_labels` (-100 off the answers) and, once computed, `reference` (B x 2: the reference model's log-probs
    of chosen and rejected)."""

    def __init__(self, tokenizer: Any, pad_to_multiple_of: int | None = None) -> None:
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        ids = [r["chosen_input_ids"] for r in rows] + [r["rejected_input_ids"] for r in rows]
        labels = [r["chosen_labels"] for r in rows] + [r["rejected_labels"] for r in rows]
        width = max(len(x) for x in ids)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = {
            "input_ids": torch.tensor([[*x, *[self.pad_id] * (width - len(x))] for x in ids]),
            "attention_mask": torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids]),
            "answer_labels": torch.tensor([[*y, *[IGNORED] * (width - len(y))] for y in labels]),
        }
        if "reference" in rows[0]:
            batch["reference"] = torch.tensor([r["reference"] for r in rows], dtype=torch.float32)
        return batch


def answer_logps(model: Any, batch: dict[str, Any]) -> Any:
    """Each row's summed log-probability of its answer tokens (`answer_labels` != -100), in float32: (chosen, rejected)
    as a B x 2 tensor."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    targets = batch["answer_labels"][:, 1:]
    scored = targets != IGNORED
    token = torch.gather(logits.log_softmax(-1), 2, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    per_row = (token * scored).sum(-1)
    return torch.stack(per_row.chunk(2), dim=1)


def dpo_loss(policy: Any, reference: Any, beta: float, loss_type: LossType) -> Any:
    """Each pair's DPO loss from B x 2 log-probs (chosen, rejected) of the policy and the reference model.

    h = (policy_c - reference_c) - (policy_r - reference_r); sigmoid: -log σ(beta·h) (DPO); hinge: max(0, 1 - beta·h)
    (SLiC); ipo: (h - 1 / (2·beta))² (IPO, where beta is the regularisation τ).
    """
    import torch

    h = (policy[:, 0] - reference[:, 0]) - (policy[:, 1] - reference[:, 1])
    if loss_type == "sigmoid":
        return -torch.nn.functional.logsigmoid(beta * h)
    if loss_type == "hinge":
        return torch.relu(1 - beta * h)
    return (h - 1 / (2 * beta)) ** 2


def reward_metrics(policy: Any, reference: Any, beta: float) -> dict[str, float]:
    """TRL's rewards/* metrics from N x 2 numpy log-probs: the implicit rewards beta·(policy - reference) of the chosen
    and rejected answers (means), the share of pairs whose chosen reward is higher, and the mean margin."""
    rewards = beta * (policy - reference)
    margin = rewards[:, 0] - rewards[:, 1]
    return {
        "rewards_chosen": float(rewards[:, 0].mean()),
        "rewards_rejected": float(rewards[:, 1].mean()),
        "reward_accuracy": float((margin > 0).mean()),
        "reward_margin": float(margin.mean()),
    }
