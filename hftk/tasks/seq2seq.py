"""Sequence to sequence (BART, T5, Marian, ...): document -> summary, or source -> translation.

`Seq2SeqTrainer` generates during evaluation (with the recipe's `generation:` settings, also saved in the model's
generation config) and is scored with ROUGE-1/2/L (rouge-score, offline). English text is scored on rouge-score's
own words (lower-cased, stemmed); Japanese, which has no spaces, on MeCab words or characters, and the metric names
say which (`rougeL_mecab`, `rougeL_chars`).
"""

from __future__ import annotations

import re
from typing import Any, Literal

import numpy as np
from pydantic import Field

from hftk.data import Records
from hftk.generation import GenerationSettings, generating_trainer, seed_sampling
from hftk.recipe import Recipe
from hftk.tasks.base import Features, Task

_JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
_SUFFIX = {"words": "", "mecab": "_mecab", "chars": "_chars"}


class Seq2SeqRecipe(Recipe):
    task: Literal["seq2seq"]
    max_target_length: int = Field(default=128, gt=0)  # target tokens kept for training
    prefix: str = ""  # put before every input, e.g. "summarize: " for T5
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    # ROUGE tokens: rouge-score's English words, MeCab words or characters; auto picks MeCab for Japanese targets.
    rouge_tokens: Literal["auto", "words", "mecab", "chars"] = "auto"
    # The pipeline the model serves; it names each prediction's key (summary_text, translation_text, ...).
    pipeline: Literal["summarization", "translation", "text2text-generation"] = "summarization"


class Seq2Seq(Task):
    name = "seq2seq"
    # transformers 5 removed pipeline("summarization"); hftk.pipeline("summarization", model=DIR) serves it.
    pipeline_task = "summarization"
    pipeline_aliases = ("translation", "text2text-generation")
    recipe_class = Seq2SeqRecipe
    input_roles = ("text",)
    target_roles = ("target",)
    recipe: Seq2SeqRecipe

    def __init__(self, recipe: Seq2SeqRecipe, tokenizer: Any) -> None:
        super().__init__(recipe, tokenizer)
        self.rouge_tokens = recipe.rouge_tokens
        self.main_metric = "rougeL"  # type: ignore[misc]
        self.pipeline_task = recipe.pipeline  # type: ignore[misc]

    # -- data ------------------------------------------------------------------------------------------
    def fit(self, train: Records) -> None:
        if self.rouge_tokens == "auto":
            self.rouge_tokens = _detect_tokens(self.targets(train))
        self.main_metric = f"rougeL{_SUFFIX[self.rouge_tokens]}"  # type: ignore[misc]

    def targets(self, records: Records) -> list[str]:
        return self.texts(records, "target")

    def _inputs(self, records: Records) -> list[str]:
        return [self.recipe.prefix + t for t in self.texts(records, "text")]

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

    def lengths(self, records: Records) -> list[int]:
        return [len(x) for x in self.tokenizer(self._inputs(records), verbose=False)["input_ids"]]

    def summary(self, records: Records) -> dict[str, Any]:
        # Every split trains or is scored: both columns must be there, also when `hftk check` has no tokenizer.
        self.texts(records, "text")
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

    def trainer_class(self) -> type:
        from transformers import Seq2SeqTrainer

        return generating_trainer(Seq2SeqTrainer, self.recipe.generation)

    def training_arguments(self, kwargs: dict[str, Any]) -> Any:
        from transformers import Seq2SeqTrainingArguments

        # Evaluation generates (with the model's generation config) and keeps token ids, not logits.
        return Seq2SeqTrainingArguments(**kwargs, predict_with_generate=True)

    # -- outputs ---------------------------------------------------------------------------------------
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
        targets = self.targets(records)
        references = [targets[i] for i in features["example"]]
        if self.rouge_tokens == "auto":
            self.rouge_tokens = _detect_tokens(references)
        return rouge(self.decode(outputs), references, self.rouge_tokens)

    def metric_fn(self, records: Records, features: Features) -> Any:
        def compute(prediction: Any) -> dict[str, float]:
            return self.score(records, features, list(prediction.predictions))

        return compute

    def postprocess(self, records: Records, features: Features, outputs: list[Any], **_: Any) -> list[dict]:
        key = PIPELINE_TASKS[self.recipe.pipeline]
        return [{key: text} for text in self.decode(outputs)]


# ------------------------------------------------------------------------------------------------ ROUGE


def _detect_tokens(texts: list[str]) -> str:
    japanese = sum(bool(_JAPANESE.search(t)) for t in texts)
    return "mecab" if japanese * 2 > len(texts) else "words"


class _MecabTokens:
    """rouge-score tokenizer: MeCab (unidic-lite) words, as hftk's Japanese tokenizer splits them."""

    def __init__(self) -> None:
        import fugashi

        from hftk.japanese import _mecab_args

        self.tagger = fugashi.GenericTagger(_mecab_args("unidic_lite", None))

    def tokenize(self, text: str) -> list[str]:
        return [w.surface for w in self.tagger(text)]


class _CharTokens:
    def tokenize(self, text: str) -> list[str]:
        return [c for c in text if not c.isspace()]


def rouge(predictions: list[str], references: list[str], tokens: str = "words") -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 (0-1) and `gen_len`, the mean prediction length in the same tokens.

    `tokens`: "words" (rouge-score's English tokenizer: lower-cased [a-z0-9] runs, Porter-stemmed, as the HF
    summarization examples), "mecab" or "chars"; the names of non-English scores carry the unit (`rougeL_mecab`).
    """
    from rouge_score import rouge_scorer, tokenizers

    types = ["rouge1", "rouge2", "rougeL"]
    if tokens == "words":
        tokenizer = tokenizers.DefaultTokenizer(use_stemmer=True)
    else:
        tokenizer = _MecabTokens() if tokens == "mecab" else _CharTokens()
    scorer = rouge_scorer.RougeScorer(types, tokenizer=tokenizer)
    totals = dict.fromkeys(types, 0.0)
    for pred, ref in zip(predictions, references):
        for name, s in scorer.score(ref, pred).items():
            totals[name] += s.fmeasure
    n = max(len(predictions), 1)
    suffix = _SUFFIX[tokens]
    out = {f"{name}{suffix}": totals[name] / n for name in types}
    out["gen_len"] = sum(len(tokenizer.tokenize(p)) for p in predictions) / n
    return out


# ------------------------------------------------------------------------------------------------ pipeline

# Tasks transformers 5 removed from `pipeline()`, and the key each answer used there.
PIPELINE_TASKS: dict[str, str] = {
    "summarization": "summary_text",
    "translation": "translation_text",
    "text2text-generation": "generated_text",
}


def seq2seq_pipeline(task: str, model: str, **kwargs: Any) -> Any:
    """`pipeline("summarization" | "translation" | "text2text-generation", model=DIR)` as transformers 4 had it:
    `pipe(text or [texts], **generate_kwargs)` -> [{"summary_text": ...}, ...], decoding with the model's generation
    config (an hftk model saves its recipe's `generation:` settings there)."""
    from transformers import AutoModelForSeq2SeqLM, Pipeline

    class Seq2SeqPipeline(Pipeline):
        key = PIPELINE_TASKS[task]

        def _sanitize_parameters(self, truncation: bool = True, **generate_kwargs: Any):
            return {"truncation": truncation}, generate_kwargs, {}

        def preprocess(self, text: str, truncation: bool = True) -> dict[str, Any]:
            return self.tokenizer(text, truncation=truncation, return_tensors="pt")

        def _forward(self, inputs: dict[str, Any], **generate_kwargs: Any) -> dict[str, Any]:
            return {"output_ids": self.model.generate(**inputs, **generate_kwargs)}

        def postprocess(self, outputs: dict[str, Any]) -> list[dict[str, str]]:
            return [
                {self.key: self.tokenizer.decode(ids, skip_special_tokens=True).strip()}
                for ids in outputs["output_ids"]
            ]

    tokenizer = kwargs.pop("tokenizer")
    load = {"use_safetensors": True, **kwargs.pop("model_kwargs", {})}
    load["trust_remote_code"] = bool(kwargs.pop("trust_remote_code", False))
    loaded = AutoModelForSeq2SeqLM.from_pretrained(model, **load)
    return Seq2SeqPipeline(model=loaded, tokenizer=tokenizer, task=task, **kwargs)
