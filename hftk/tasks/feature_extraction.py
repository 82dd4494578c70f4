"""Sentence embeddings (feature extraction): pooled hidden states of any encoder, batched and length-sorted.

A checkpoint saved by sentence-transformers says how it pools (`1_Pooling/config.json`), whether it normalises
(a Normalize module in `modules.json`) and its `max_seq_length`; those are the defaults here, so
all-MiniLM-L6-v2 gives the vectors `SentenceTransformer.encode` gives. Other checkpoints default to mean
pooling over the attention mask.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hftk.data.records import Records, Split
from hftk.errors import HftkError
from hftk.models.loading import resolve_model
from hftk.tasks import documents
from hftk.tasks.base import Features, Task
from hftk.tasks.documents import LongInputsRecipe


class FeatureExtractionRecipe(LongInputsRecipe):
    task: Literal["feature-extraction"]
    pooling: Literal["cls", "mean", "max"] | None = None  # default: the checkpoint's own, else mean
    normalize: bool | None = None  # unit-length vectors (cosine = dot product); default: the checkpoint's own


class FeatureExtraction(Task):
    name = "feature-extraction"
    pipeline_task = "feature-extraction"
    recipe_class = FeatureExtractionRecipe
    input_roles = ("text",)
    trainable = False
    needs_head = False
    recipe: FeatureExtractionRecipe

    def __init__(self, recipe: FeatureExtractionRecipe, tokenizer: Any) -> None:
        self.saved = _sentence_transformers_config(recipe.model)
        super().__init__(recipe, tokenizer)
        self.pooling = recipe.pooling or self.saved.get("pooling", "mean")
        self.normalize = recipe.normalize if recipe.normalize is not None else self.saved.get("normalize", False)
        documents.check_fits(recipe, self.max_length, tokenizer.num_special_tokens_to_add() if tokenizer else 2)

    def check_lengths(self, lengths: np.ndarray) -> tuple[str | None, dict[str, Any]]:
        return documents.report(self.recipe, lengths, self.max_length)

    def lengths(self, split: Split) -> list[int]:
        return [len(x) for part in split.batches() for x in self.tokenizer(self.texts(part, "text"))["input_ids"]]

    def default_max_length(self) -> int | None:
        return self.saved.get("max_length")  # a sentence-transformers checkpoint's own max_seq_length

    def encode(self, records: Records, *, with_targets: bool) -> Features:
        return documents.encode(self.tokenizer, self.texts(records, "text"), None, self.max_length, self.recipe)

    def targets(self, records: Records) -> list[Any]:
        raise HftkError("feature-extraction has no labels; use hftk embed, then compare the vectors")

    def auto_model(self) -> Any:
        from transformers import AutoModel

        return AutoModel

    def export_outputs(self) -> tuple[str, ...]:
        return ("last_hidden_state",)  # pooled in `forward`, so one export serves every pooling

    def forward(self, model: Any, batch: dict[str, Any]) -> tuple[np.ndarray, ...]:
        import torch

        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "cls":
            vectors = hidden[:, 0]
        elif self.pooling == "max":
            vectors = hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
        else:
            vectors = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            vectors = torch.nn.functional.normalize(vectors, dim=-1)
        return (vectors.float().cpu().numpy(),)

    def postprocess(self, records: Records, features: Features, outputs: list[Any], **_: Any) -> list[dict]:
        return [{"embedding": v.tolist()} for v in self.vectors(features, outputs)]

    def vectors(self, features: Features, outputs: list[Any]) -> np.ndarray:
        """One float32 vector per document: a long one's windows pooled, each weighted by its tokens (their mean),
        or their maximum (`windows.pooling: max`), then normalised again where the checkpoint normalises."""
        if "example" not in features:
            return np.stack(outputs).astype(np.float32)
        tokens = [sum(mask) for mask in features["attention_mask"]]
        pooled = documents.pool(features, outputs, self.recipe.windows.pooling, weights=tokens)
        if self.normalize:
            pooled /= np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
        return pooled.astype(np.float32)

    def score(self, records: Records, features: Features, outputs: list[Any]) -> dict[str, float]:
        raise HftkError("feature-extraction has no labels to score; use hftk embed, then compare the vectors")


def _sentence_transformers_config(ref: str) -> dict[str, Any]:
    """Pooling, normalisation and max length saved by sentence-transformers next to the weights, if any."""
    try:
        root = Path(resolve_model(ref))
    except HftkError:
        return {}
    out: dict[str, Any] = {}
    pooling = root / "1_Pooling" / "config.json"
    if pooling.is_file():
        modes = json.loads(pooling.read_text(encoding="utf-8"))
        for mode in ("cls", "mean", "max"):
            if modes.get(f"pooling_mode_{mode}_token") or modes.get(f"pooling_mode_{mode}_tokens"):
                out["pooling"] = mode
    modules = root / "modules.json"
    if modules.is_file():
        kinds = [m.get("type", "") for m in json.loads(modules.read_text(encoding="utf-8"))]
        out["normalize"] = any(k.endswith("Normalize") for k in kinds)
    config = root / "sentence_bert_config.json"
    if config.is_file():
        length = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
        if isinstance(length, int) and length > 0:
            out["max_length"] = length
    return out
