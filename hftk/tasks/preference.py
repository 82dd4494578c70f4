"""Preference tuning (`task: preference`): DPO on (prompt, chosen, rejected) rows, on top of an instruction-tuned
causal LM.

The model trained is a causal LM like `causal-lm`'s on `data.shape: completion`, and predicts as one (the same
prompt template, generation settings and output folder), so this task extends that one and changes what training
sees: pairs of answers to one prompt (features/preference.py) and hftk's DPO loss instead of the model's own.

Why not TRL's DPOTrainer: it tokenises and truncates the data itself (no file:line for a bad row, its own
truncation rules beside hftk's instruction encoding), takes its own `DPOConfig` and collator, and is a Trainer
subclass of its own that hftk's mixin (seeded order, identical resume, no pickles, located errors, the task's
metrics) would have to be stacked onto. The loss is a few lines; the rest is hftk's as for every task.

The reference model's log-probabilities are computed once, before the policy loads (as TRL's
`precompute_ref_log_probs`): only one model is in memory while training, and a resumed run recomputes the same
numbers from the same frozen weights.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from hftk.data.records import Records, Split
from hftk.errors import HftkError
from hftk.features.encode import encoded_dataset
from hftk.features.instructions import Example, chat_segments, encode_segments
from hftk.features.packing import Template
from hftk.features.preference import PAIR_COLUMNS, LossType, PairCollator, answer_logps, dpo_loss, reward_metrics
from hftk.models.loading import check_weights, resolve_model
from hftk.report import Section
from hftk.tasks.base import Features
from hftk.tasks.language_modeling import CausalLMDataConfig, CausalLMRecipe, InstructionTuning

_REFERENCE_BATCH = 8  # pairs per forward pass of the reference model


class PreferenceDataConfig(CausalLMDataConfig):
    """One file per split, one pair a row: the prompt, then chosen and rejected answers (text). completion: a
    prompt column (optional context, system for prompt_template); chat: a messages column, the turns before the
    answer, written by the chat template with its generation prompt."""

    shape: Literal["completion", "chat"] = "completion"


class PreferenceRecipe(CausalLMRecipe):
    task: Literal["preference"]  # type: ignore[assignment]
    data: PreferenceDataConfig  # type: ignore[assignment]
    # The model whose log-probabilities the policy is compared with; None: the recipe's model (the SFT model).
    reference_model: str | None = None
    # How far the policy may move from the reference (DPO's β; for ipo, its τ): 0.1 as in the paper and TRL.
    beta: float = Field(default=0.1, gt=0)
    # sigmoid: DPO; ipo: IPO's squared loss; hinge: SLiC's hinge loss (features/preference.py).
    loss_type: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"

    @model_validator(mode="after")
    def _answers_only(self) -> PreferenceRecipe:
        if self.train_on_prompt:
            raise ValueError("train_on_prompt: DPO compares the answers' log-probabilities only; remove it")
        return self


class Preference(InstructionTuning):
    """DPO: the policy learns to give the chosen answer a higher log-probability than the rejected one, relative to
    the reference model."""

    name = "preference"
    recipe_class = PreferenceRecipe
    recipe: PreferenceRecipe
    input_roles = ("prompt",)
    optional_roles = ("context", "system")
    target_roles = ("chosen", "rejected")
    main_metric = "loss"  # the DPO loss; reward accuracy saturates at 1 long before the policy stops improving
    greater_is_better = False
    evaluates = "outputs"  # each pair's log-probs (B x 2), scored into rewards
    cpu_bf16 = False  # rewards are differences of summed log-probs: bf16 rounding is of the size of a margin
    example_file = "train.jsonl"
    example_fields = ("beta: 0.1", "loss_type: sigmoid")
    # The collator's columns are not the model's arguments; the reference log-probs come back as the label ids.
    required_arguments: ClassVar[dict[str, Any]] = {"remove_unused_columns": False, "label_names": ["reference"]}

    def __init__(self, recipe: PreferenceRecipe, tokenizer: Any) -> None:
        super().__init__(recipe, tokenizer)
        self.target_roles = type(self).target_roles  # instruction tuning's completion shape names its own

    # -- data ------------------------------------------------------------------------------------------
    def targets(self, records: Records) -> list[Any]:
        """Each row's (chosen, rejected), checked: text, neither empty, not the same."""
        self._pair_prompts(records)  # a bad prompt (or a template's missing column) is found now, not in training
        chosen, rejected = self._given_answers(records, "chosen"), self._given_answers(records, "rejected")
        for i, (c, r) in enumerate(zip(chosen, rejected)):
            if c.strip() == r.strip():
                raise HftkError(
                    f"{records.where(i)}: chosen and rejected are the same answer; a pair needs two different "
                    "answers to prefer one of them (drop the row)"
                )
        return list(zip(chosen, rejected))

    def references(self, records: Records) -> list[str]:
        """Generated answers are scored against the chosen ones."""
        return self._given_answers(records, "chosen")

    def _pair_prompts(self, records: Records) -> list[Any]:
        """Each row's prompt: the templated text (completion), or the chat turns the answers follow (chat)."""
        if self.shape == "completion":
            return self._prompts(records)
        chats = self._chats(records, training=False)
        for i, chat in enumerate(chats):
            if chat[-1]["role"] == "assistant":
                raise HftkError(
                    f"{records.where(i)}: the prompt's messages end with an assistant turn; they are the turns "
                    "before the answer, and chosen and rejected are the answers (drop the last turn)"
                )
        return chats

    def _examples(self, records: Records) -> list[Example]:
        """Each row's chosen then rejected answer as an instruction example (causal-lm's `hftk check` counts and
        lengths read these), encoded as instruction data is (a chat's answer as its assistant turn, end-of-turn
        included) and truncated so: the answer kept, the prompt losing its start."""
        tok = self.tokenizer
        pairs = zip(self._pair_prompts(records), self.targets(records))
        if self.shape == "chat":
            examples = []
            for i, (chat, answers) in enumerate(pairs):
                for a in answers:
                    segments = chat_segments(tok, [*chat, {"role": "assistant", "content": a}], records.where(i))
                    examples.append(encode_segments(tok, segments, self.max_length))
            return examples
        if tok.eos_token_id is None:
            raise HftkError(f"{tok.name_or_path}: the tokenizer has no EOS token, which ends each answer")
        prefix = Template.of(tok).prefix
        return [
            encode_segments(tok, [(p, False), (a, True)], self.max_length, prefix=prefix, eos=tok.eos_token_id)
            for p, answers in pairs
            for a in answers
        ]

    # -- features --------------------------------------------------------------------------------------
    def encode(self, records: Records, *, with_targets: bool) -> Features:
        if not with_targets:  # prediction: the prompts, as causal-lm's completion shape
            return super().encode(records, with_targets=False)
        examples = self._examples(records)
        pairs = list(zip(examples[0::2], examples[1::2]))
        return {
            "chosen_input_ids": [c.input_ids for c, _ in pairs],
            "chosen_labels": [c.labels for c, _ in pairs],
            "rejected_input_ids": [r.input_ids for _, r in pairs],
            "rejected_labels": [r.labels for _, r in pairs],
            "length": [len(c.input_ids) + len(r.input_ids) for c, r in pairs],  # Trainer's length grouping
        }

    def training_data(self, split: Split, *, evaluation: bool) -> tuple[Any, Features | None]:
        """The pairs' features (cached as every task's), with the reference model's log-probs of both answers."""
        data = self.recipe.data
        encode = functools.partial(self.encode, with_targets=True)
        settings = self.feature_settings()
        dataset, _ = encoded_dataset(split.whole(), encode, settings, num_proc=data.num_proc, cache=data.cache)
        reference = self.reference_logps(dataset)
        dataset = dataset.add_column("reference", reference.tolist())
        return dataset, ({"reference": reference} if evaluation else None)

    def reference_logps(self, dataset: Any, device: Any = None) -> np.ndarray:
        """The reference model's summed answer log-probs of every pair (N x 2: chosen, rejected), in fp32 with
        dropout off, a few pairs at a time; the model is freed before the policy loads (or, in `hftk evaluate`,
        beside the trained one). `device`: the recipe's by default."""
        import torch
        from transformers import AutoModelForCausalLM

        name = self.recipe.reference_model or self.recipe.model
        try:
            path = resolve_model(name)
        except HftkError as e:  # e.g. `hftk evaluate` where the SFT model has moved since training
            raise HftkError(
                f"reference model (what the rewards are measured against; where it is now: --set reference_model="
                f"PATH): {e}"
            ) from None
        check_weights(path)
        model = AutoModelForCausalLM.from_pretrained(
            path, use_safetensors=True, trust_remote_code=self.recipe.trust_remote_code, dtype=torch.float32
        )
        if len(self.tokenizer) > model.get_input_embeddings().weight.shape[0]:
            raise HftkError(
                f"reference_model: {name} has fewer token embeddings than the tokenizer of {self.recipe.model} has "
                "tokens; the reference must share the policy's tokenizer (use the SFT model itself)"
            )
        model.to(device or self.device_policy().device).eval()
        return self._pair_logps(model, dataset)

    def _pair_logps(self, model: Any, dataset: Any) -> np.ndarray:
        """A model's summed answer log-probs of every pair of encoded features (N x 2: chosen, rejected)."""
        import torch

        device = next(model.parameters()).device
        collate = PairCollator(self.tokenizer)
        rows = dataset.select_columns(list(PAIR_COLUMNS))
        out = []
        with torch.no_grad():
            for start in range(0, len(rows), _REFERENCE_BATCH):
                batch = collate(list(rows.select(range(start, min(start + _REFERENCE_BATCH, len(rows))))))
                out.append(answer_logps(model, {k: v.to(device) for k, v in batch.items()}).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.float32)

    def evaluation_outputs(self, model: Any, features: Features) -> list[np.ndarray]:
        """`hftk evaluate`: each pair's answer log-probs under the trained model and under the reference (2 x 2:
        rows policy, reference; columns chosen, rejected), the reference's computed as before training."""
        from datasets import Dataset

        pairs = Dataset.from_dict({k: features[k] for k in PAIR_COLUMNS})
        policy = self._pair_logps(model, pairs)
        reference = self.reference_logps(pairs, next(model.parameters()).device)
        return list(np.stack([policy, reference], axis=1))

    def collator(self, pad_to_multiple_of: int | None = None) -> PairCollator:
        return PairCollator(self.tokenizer, pad_to_multiple_of)

    # -- loss and metrics ------------------------------------------------------------------------------
    def training_loss(self) -> Any:
        beta, loss_type = self.recipe.beta, self.recipe.loss_type

        def loss(model: Any, inputs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
            policy = answer_logps(model, inputs)
            per_pair = dpo_loss(policy, inputs["reference"], beta, loss_type)
            return per_pair.mean(), {"logps": policy.detach()}

        return loss

    def score(self, records: Records, features: Features, outputs: list[Any]) -> dict[str, float]:
        """The DPO loss (the recipe's loss_type and beta) and the reward metrics, as training's evaluation gives
        them, from `evaluation_outputs`."""
        import torch

        logps = np.stack(outputs) if outputs else np.zeros((0, 2, 2), dtype=np.float32)
        policy, reference = logps[:, 0], logps[:, 1]
        per_pair = dpo_loss(
            torch.from_numpy(policy), torch.from_numpy(reference), self.recipe.beta, self.recipe.loss_type
        )
        return {"loss": float(per_pair.mean()), **reward_metrics(policy, reference, self.recipe.beta)}

    def report(self, records: Records, features: Features, outputs: list[Any]) -> list[Section]:
        """No per-token sections (causal LM's perplexity by document): the report holds the generated answers'."""
        return []

    def metric_fn(self, split: Split, features: Features, *, tune: bool = False, keep: list[Any] | None = None) -> Any:
        beta = self.recipe.beta

        def compute(prediction: Any) -> dict[str, float]:
            policy, reference = np.asarray(prediction.predictions), np.asarray(prediction.label_ids)
            return reward_metrics(policy, reference, beta)

        return compute

    def card_lines(self, section: str) -> list[str]:
        if section != "training":
            return []
        reference = f"`{self.recipe.reference_model or self.recipe.model}`"
        if self.recipe.reference_model is None:
            reference += " (the model it started from)"
        loss: dict[LossType, str] = {"sigmoid": "DPO", "ipo": "IPO", "hinge": "SLiC (hinge)"}
        return [
            f"Preference-tuned with direct preference optimisation: the {loss[self.recipe.loss_type]} loss "
            f"(`loss_type: {self.recipe.loss_type}`), beta {self.recipe.beta}, against the frozen reference model "
            f"{reference}, whose log-probabilities were computed once before training. Rewards are "
            "beta x (log-prob of the answer under this model - under the reference).",
            "",
        ]
