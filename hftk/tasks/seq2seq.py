"""Sequence to sequence (BART, T5, Marian, ...): document -> summary, or source -> translation.

Instruction-style rows take the causal-lm recipe shape: `data.shape: completion` with the roles prompt, completion
(and context, system for `prompt_template`); the template's prompt is the encoder input, the completion the target.

`Seq2SeqTrainer` generates during evaluation (with the recipe's `generation:` settings, also saved in the model's
generation config) and is scored with ROUGE-1/2/L (rouge-score, offline). English text is scored on rouge-score's
own words (lower-cased, stemmed); Japanese, which has no spaces, on MeCab words or characters, and the metric names
say which (`rougeL_mecab`, `rougeL_chars`).
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from hftk.config.recipe import DataConfig, Recipe
from hftk.data.records import Records, Split
from hftk.report import Section, texts
from hftk.tasks.base import Features, Task
from hftk.tasks.generation import Generates, GenerationSettings, PromptTemplate, seed_sampling
from hftk.tasks.metrics import ROUGE_SUFFIX, rouge, rouge_scores, rouge_units


class Seq2SeqDataConfig(DataConfig):
    # text: a `text` and a `target` column (document -> summary, source -> translation). completion: instruction
    # rows as causal-lm reads them, a `prompt` and a `completion` column (optional `context`, `system` for
    # prompt_template), so one recipe shape serves decoders and encoder-decoders.
    shape: Literal["text", "completion"] = "text"


class Seq2SeqRecipe(Recipe):
    task: Literal["seq2seq"]
    data: Seq2SeqDataConfig
    # shape completion: how a row's encoder input is written from the roles prompt, context and system (as
    # causal-lm's); None: the prompt column as it is.
    prompt_template: PromptTemplate = None
    max_target_length: int = Field(default=128, gt=0)  # target tokens kept for training
    prefix: str = ""  # put before every input, e.g. "summarize: " for T5
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    # ROUGE tokens: rouge-score's English words, MeCab words or characters; auto picks MeCab for Japanese targets.
    rouge_tokens: Literal["auto", "words", "mecab", "chars"] = "auto"
    # The pipeline the model serves; it names each prediction's key (summary_text, translation_text, ...).
    pipeline: Literal["summarization", "translation", "text2text-generation"] = "summarization"

    @model_validator(mode="after")
    def _template_needs_prompts(self) -> Seq2SeqRecipe:
        if self.prompt_template is not None and self.data.shape != "completion":
            raise ValueError("prompt_template applies to data.shape: completion; set it or remove the template")
        return self


class Seq2Seq(Generates, Task):
    name = "seq2seq"
    # transformers 5 removed pipeline("summarization"); hftk.pipeline("summarization", model=DIR) serves it.
    pipeline_task = "summarization"
    pipeline_aliases = ("translation", "text2text-generation")
    recipe_class = Seq2SeqRecipe
    input_roles = ("text",)
    target_roles = ("target",)
    evaluates = "generation"
    peft_task_type = "SEQ_2_SEQ_LM"
    example_file = "train.jsonl"
    recipe: Seq2SeqRecipe

    def __init__(self, recipe: Seq2SeqRecipe, tokenizer: Any) -> None:
        super().__init__(recipe, tokenizer)
        self.rouge_tokens = recipe.rouge_tokens  # "auto" until the training targets (or references) are seen
        if recipe.data.shape == "completion":
            self.input_roles = ("prompt",)
            self.optional_roles = ("context", "system")
            self.target_roles = ("completion",)

    @property
    def main_metric(self) -> str:  # type: ignore[override]
        return f"rougeL{ROUGE_SUFFIX.get(self.rouge_tokens, '')}"

    @property
    def pipeline(self) -> str:
        return self.recipe.pipeline

    def example_input(self) -> dict[str, Any]:
        return {
            "text": "#Person1#: Did you book the table for tonight? #Person2#: Yes, at seven, by the window. "
            "#Person1#: Great, I'll meet you there."
        }

    def pipeline_example(self) -> tuple[str, str]:
        return "", f"{self.example_input()['text']!r}, max_new_tokens=30"

    # -- data ------------------------------------------------------------------------------------------
    def learnt_fields(self) -> dict[str, Any]:
        return {"rouge_tokens": self.rouge_tokens} if self.recipe.rouge_tokens == "auto" else {}

    def fit(self, train: Split) -> None:
        if self.rouge_tokens == "auto":
            self.rouge_tokens = rouge_units(self.targets(train.whole()))

    def targets(self, records: Records) -> list[str]:
        return self.texts(records, self.target_roles[0])

    def _inputs(self, records: Records) -> list[str]:
        """The encoder inputs: the text column, or each instruction row's prompt written by prompt_template."""
        if self.recipe.data.shape == "completion":
            inputs = self.templated_prompts(records, self.recipe.prompt_template)
        else:
            inputs = self.texts(records, "text")
        return [self.recipe.prefix + t for t in inputs]

    def encode(self, records: Records, *, with_targets: bool) -> Features:
        if not with_targets:  # predicting
            seed_sampling(self.recipe.generation, self.recipe.seed)
        features = dict(self.tokenizer(self._inputs(records), truncation=True, max_length=self.max_length))
        # Evaluation splits are reordered by length: `example` leads each feature back to its record.
        features["example"] = list(range(len(records)))
        if with_targets:
            labels = self.tokenizer(
                text_target=self.targets(records), truncation=True, max_length=self.recipe.max_target_length
            )
            features["labels"] = labels["input_ids"]
        return features

    def lengths(self, split: Split) -> list[int]:
        return [len(x) for x in self.tokenizer(self._inputs(split.whole()), verbose=False)["input_ids"]]

    def summary(self, split: Split) -> dict[str, Any]:
        # Every split trains or is scored: both columns must be there, also when `hftk check` has no tokenizer.
        records = split.whole()
        self._inputs(records)
        targets = self.targets(records)
        if self.tokenizer is None:
            return {}
        n = np.asarray([len(x) for x in self.tokenizer(text_target=targets, verbose=False)["input_ids"]])
        over = int((n > self.recipe.max_target_length).sum())
        return {"target_tokens": {"p50": int(np.median(n)), "max": int(n.max()), "over_max_target_length": over}}

    # -- model -----------------------------------------------------------------------------------------
    def auto_model(self) -> Any:
        from transformers import AutoModelForSeq2SeqLM

        return AutoModelForSeq2SeqLM

    def collator(self, pad_to_multiple_of: int | None = None) -> Any:
        from transformers import DataCollatorForSeq2Seq

        return DataCollatorForSeq2Seq(self.tokenizer, label_pad_token_id=-100, pad_to_multiple_of=pad_to_multiple_of)

    # -- outputs ---------------------------------------------------------------------------------------
    def export_outputs(self) -> None:
        return None  # generate() runs the decoder token by token

    def forward(self, model: Any, batch: dict[str, Any]) -> tuple[np.ndarray, ...]:
        self.recipe.generation.apply(model)
        return (model.generate(**batch, generation_config=model.generation_config).cpu().numpy(),)

    def decode(self, outputs: list[Any]) -> list[str]:
        pad = self.tokenizer.pad_token_id or 0
        return [
            self.tokenizer.decode(np.where(np.asarray(ids) < 0, pad, ids).tolist(), skip_special_tokens=True).strip()
            for ids in outputs
        ]

    def score(self, records: Records, features: Features, outputs: list[Any]) -> dict[str, float]:
        return rouge(self.decode(outputs), self._references(records, features), self.rouge_tokens)

    def report(self, records: Records, features: Features, outputs: list[Any]) -> list[Section]:
        """ROUGE per example (the scores `score` averages), in record order."""
        order = np.argsort(features["example"], kind="stable")  # one feature per record
        references, predictions = self._references(records, features), self.decode(outputs)
        references, predictions = [references[k] for k in order], [predictions[k] for k in order]
        scores = rouge_scores(predictions, references, self.rouge_tokens)
        lengths = np.asarray(self.lengths(records))  # whole inputs, not what max_length kept
        inputs = functools.partial(self.shown_input, records)
        return texts.rouge_by_example(
            scores, self.main_metric, references, predictions, lengths, self.max_length, inputs
        )

    def _references(self, records: Records, features: Features) -> list[str]:
        """Each feature's reference; "auto" ROUGE tokens are decided by them when training has not."""
        targets = self.targets(records)
        references = [targets[i] for i in features["example"]]
        if self.rouge_tokens == "auto":
            self.rouge_tokens = rouge_units(references)
        return references

    def postprocess(self, records: Records, features: Features, outputs: list[Any], **_: Any) -> list[dict]:
        key = PIPELINE_TASKS[self.recipe.pipeline]
        return [{key: text} for text in self.decode(outputs)]


# The pipelines a seq2seq model serves (transformers 5 removed them from `pipeline()`), and the key of each answer.
PIPELINE_TASKS: dict[str, str] = {
    "summarization": "summary_text",
    "translation": "translation_text",
    "text2text-generation": "generated_text",
}
