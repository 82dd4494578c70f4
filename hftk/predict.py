"""Batched, length-sorted inference over a trained model directory.

Inputs are tokenised in one call, sorted by length so each batch carries almost no padding, run under
`torch.inference_mode`, and written back in input order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hftk.data import Records
from hftk.errors import HftkError, not_utf8
from hftk.files import atomic_write_text
from hftk.models import check_weights, detect_device, device_policy, load_tokenizer, resolve_model
from hftk.recipe import load_recipe
from hftk.tasks import Task, get_task
from hftk.tasks.base import Features

# Padded tokens per batch: batches of short inputs hold more examples, long ones fewer, so the cost per
# batch stays even and the per-call overhead is amortised.
TOKENS_PER_BATCH = 4096

logger = logging.getLogger("hftk")


class Predictor:
    """A trained model directory, ready to predict. `Predictor(DIR).predict(["text", ...])`."""

    def __init__(self, model_dir: str | Path, *, device: str | None = None, max_batch_size: int = 64) -> None:
        self.model_dir = Path(resolve_model(str(model_dir)))
        recipe_file = self.model_dir / "recipe.yaml"
        if not recipe_file.is_file():
            raise HftkError(f"{self.model_dir}: no recipe.yaml (not trained by hftk); train it with hftk train")
        self.recipe = load_recipe(recipe_file)
        import torch
        from transformers import AutoConfig

        self.trust_remote_code = self.recipe.trust_remote_code
        if self.trust_remote_code:
            logger.warning("trust_remote_code: true (from %s) runs Python code shipped with the model", recipe_file)
        self.tokenizer = load_tokenizer(str(self.model_dir), trust_remote_code=self.trust_remote_code)
        config = AutoConfig.from_pretrained(self.model_dir, trust_remote_code=self.trust_remote_code)
        self.task: Task = get_task(self.recipe.task).from_trained(self.recipe, self.tokenizer, config)
        self.device = device or detect_device()
        dtype = device_policy("auto", self.device).inference_dtype if self.device == "cuda" else torch.float32
        self.dtype = dtype
        self._model = None
        self.max_batch_size = max_batch_size

    @property
    def model(self) -> Any:
        """Loaded on first use, so bad input fails fast, before the weights are read."""
        if self._model is None:
            check_weights(str(self.model_dir))
            model = self.task.auto_model().from_pretrained(
                self.model_dir, dtype=self.dtype, use_safetensors=True, trust_remote_code=self.trust_remote_code
            )
            self._model = model.to(self.device).eval()
        return self._model

    # -- inputs ----------------------------------------------------------------------------------------
    def read(self, path: str | Path) -> Records:
        """Inputs to predict: a text file (one input per line), or any data file the task reads (CSV, TSV,
        JSON(L), Parquet, ... with the recipe's column names)."""
        p = Path(path)
        if p.suffix.lower() in (".txt", ""):
            if not p.is_file():
                raise HftkError(f"{p}: input file not found; check the path")
            data = p.read_bytes()
            try:
                lines = data.decode("utf-8").splitlines()
            except UnicodeDecodeError as e:
                raise not_utf8(p, data, e) from None
            col = self.recipe.data.column(self.task.input_roles[0])
            numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
            if not numbered:
                raise HftkError(f"{p}: no inputs (the file is empty); one input per line")
            return Records(str(p), [{col: t} for _, t in numbered], [n for n, _ in numbered], [col])
        return self.task.read(p)

    def records(self, inputs: list[str] | list[dict[str, Any]]) -> Records:
        """In-memory inputs: strings, or dicts keyed by the recipe's column names."""
        col = self.recipe.data.column(self.task.input_roles[0])
        rows = [x if isinstance(x, dict) else {col: x} for x in inputs]
        columns = list(dict.fromkeys(k for r in rows[:1000] for k in r))
        return Records("<inputs>", rows, None, columns)

    # -- running ---------------------------------------------------------------------------------------
    def run(self, features: Features) -> list[Any]:
        """The model's outputs for every feature, in feature order, batched shortest first."""
        import torch

        ids = features["input_ids"]
        lengths = [len(x) for x in ids]
        order = sorted(range(len(ids)), key=lengths.__getitem__)
        names = [n for n in self.tokenizer.model_input_names if n in features]
        pad = {name: (self.tokenizer.pad_token_id or 0) if name == "input_ids" else 0 for name in names}
        results: list[Any] = [None] * len(ids)
        with torch.inference_mode():
            for batch in _batches(order, lengths, TOKENS_PER_BATCH, self.max_batch_size):
                width = lengths[batch[-1]]
                tensors = {}
                for name in names:
                    arr = np.full((len(batch), width), pad[name], dtype=np.int64)
                    for row, i in enumerate(batch):
                        values = features[name][i]
                        arr[row, : len(values)] = values
                    tensors[name] = torch.from_numpy(arr).to(self.device)
                arrays = self.task.forward(self.model, tensors)
                for i, out in zip(batch, self.task.unbatch(arrays, [lengths[i] for i in batch])):
                    results[i] = out
        return results

    def predict(self, inputs: list[str] | list[dict[str, Any]] | Records, **options: Any) -> list[dict]:
        """One prediction dict per input, in input order. Options are the task's (e.g. top_k)."""
        records = inputs if isinstance(inputs, Records) else self.records(inputs)
        features = self.task.encode(records, with_targets=False)
        return self.task.postprocess(records, features, self.run(features), **options)

    def evaluate(self, records: Records) -> dict[str, float]:
        """The task's metrics on labelled records."""
        features = self.task.encode(records, with_targets=True)
        return self.task.score(records, features, self.run(features))


def _batches(order: list[int], lengths: list[int], tokens: int, max_size: int) -> Iterator[list[int]]:
    """Consecutive runs of `order` whose padded size (count x longest) stays within `tokens`."""
    batch: list[int] = []
    for i in order:
        if batch and ((len(batch) + 1) * lengths[i] > tokens or len(batch) >= max_size):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def predict(model_dir: str | Path, input_path: str | Path, output_path: str | Path, **options: Any) -> int:
    """Predict every input of a file and write JSONL in input order; returns the number of rows written."""
    out = Path(output_path)
    if out.is_dir():
        raise HftkError(f"{out}: is a directory; give a file name such as predictions.jsonl")
    if any(p.exists() and not p.is_dir() for p in out.parents):
        raise HftkError(f"{out}: a parent of the output path is a file, not a folder; choose another path")
    if options.get("top_k") is not None and options["top_k"] < 1:
        raise HftkError(f"--top-k {options['top_k']}: must be 1 or more")
    predictor = Predictor(model_dir)
    records = predictor.read(input_path)
    results = predictor.predict(records, **options)
    lines = (
        json.dumps({**_inputs_of(row, predictor), **result}, ensure_ascii=False)
        for row, result in zip(records.rows, results)
    )
    try:
        atomic_write_text(out, "".join(line + "\n" for line in lines))  # never half a predictions file
    except OSError as e:
        raise HftkError(f"{out}: cannot write ({e.strerror or e}); choose a writable path") from None
    return len(results)


def _inputs_of(row: dict[str, Any], predictor: Predictor) -> dict[str, Any]:
    cols = [predictor.recipe.data.column(r) for r in (*predictor.task.input_roles, *predictor.task.optional_roles)]
    return {c: row[c] for c in cols if c in row}


def evaluate(model_dir: str | Path, data_path: str | Path) -> dict[str, float]:
    """The task's metrics on a labelled file, computed from the same batched predictor."""
    predictor = Predictor(model_dir)
    return predictor.evaluate(predictor.task.read(data_path))
