"""Batched, length-sorted inference over a trained model directory.

Inputs are tokenised in one call, sorted by length so each batch carries almost no padding, run under
`torch.inference_mode`, and written back in input order.
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from hftk.config.recipe import Recipe
from hftk.data.readers import surrogate_in
from hftk.data.records import Records
from hftk.errors import HftkError, not_unicode, not_utf8
from hftk.inference.exported import OnnxModel, is_exported, manifest
from hftk.models import lora
from hftk.models.loading import DevicePolicy, check_weights, load_config, load_tokenizer, resolve_model
from hftk.tasks import Features, Task, get_task, load_recipe, pipeline_names
from hftk.tasks.metrics import defined

# Padded tokens per batch: batches of short inputs hold more examples, long ones fewer, so the cost per
# batch stays even and the per-call overhead is amortised.
TOKENS_PER_BATCH = 4096
PROGRESS_FROM = 500  # inputs (features) from which predict, evaluate and embed show a progress bar

logger = logging.getLogger("hftk")


class Predictor:
    """A model ready to predict: `Predictor(DIR).predict(["text", ...])`.

    An hftk output directory says its own task (recipe.yaml); any other checkpoint (local dir, hub id or
    `package:NAME`) needs `task=`. `options` set recipe fields by dotted key, e.g. `pooling="mean"` or
    `**{"data.columns.text": "sentence"}`.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        task: str | None = None,
        device: str | None = None,
        max_batch_size: int = 64,
        trust_remote_code: bool = False,
        **options: Any,
    ) -> None:
        if not isinstance(trust_remote_code, bool):  # `--set trust_remote_code=yes` is a string, not a yes
            raise HftkError(f"trust_remote_code: {trust_remote_code!r} is not true or false; use --trust-remote-code")
        self.model_ref = resolve_model(str(model))
        self.recipe = _recipe_for(self.model_ref, task, options)
        # Trust is the word of whoever runs this, never of a file inside the folder: a model folder is data that
        # people download and share (`hftk push` uploads its recipe.yaml), and it must not grant itself the right
        # to run the Python it ships.
        self.trust_remote_code = trust_remote_code
        if trust_remote_code:
            logger.warning("trust_remote_code: true runs Python code shipped with the model %s", model)
        elif self.recipe.trust_remote_code:
            logger.warning(
                "%s: its recipe.yaml says trust_remote_code: true; hftk runs code shipped with a model only when you "
                "ask (--trust-remote-code, or the trust_remote_code argument), so its own code stays unused",
                model,
            )
        self.tokenizer = load_tokenizer(self.model_ref, trust_remote_code=trust_remote_code)
        config = load_config(self.model_ref, trust_remote_code=trust_remote_code)
        self.task: Task = get_task(self.recipe.task).from_trained(self.recipe, self.tokenizer, config)
        _check_head(self.model_ref, self.task, config)
        # `precision=` (--precision) or auto for this machine: bf16 autocast on a CPU that computes bf16, half
        # precision weights on CUDA, else fp32. Not the recipe's: that was the training machine's choice (fp16 on a
        # GPU), and the model may now run elsewhere. An exported folder runs in onnxruntime, as it was exported.
        self.exported = is_exported(self.model_ref)
        if self.exported:
            self.policy = DevicePolicy("cpu", manifest(self.model_ref).get("precision", "fp32"), "onnxruntime")
        else:
            self.policy = self.task.device_policy(device, options.get("precision", "auto"))
        self.device = self.policy.device
        self.dtype = self.policy.inference_dtype
        self._model = None
        self.max_batch_size = max_batch_size

    @property
    def model_dir(self) -> Path:
        return Path(self.model_ref)

    @property
    def model(self) -> Any:
        """Loaded on first use, so bad input fails fast, before the weights are read."""
        if self._model is None and self.exported:
            self._model = OnnxModel(self.model_ref)
        if self._model is None:
            kwargs = {"dtype": self.dtype, "use_safetensors": True, "trust_remote_code": self.trust_remote_code}
            if lora.is_unmerged(Path(self.model_ref)):  # trained with peft: {merge: false}
                model = lora.load(self.task.auto_model(), Path(self.model_ref), self.recipe.model, **kwargs)
            else:
                check_weights(self.model_ref)
                model = self.task.auto_model().from_pretrained(self.model_ref, **kwargs)
            self._model = model.to(self.device).eval()
        return self._model

    @model.setter
    def model(self, model: Any) -> None:
        """Share weights already loaded (e.g. between predictors of one checkpoint with other settings)."""
        self._model = model

    # -- inputs ----------------------------------------------------------------------------------------
    def read(self, path: str | Path) -> Records:
        """Inputs to predict: a text file (one input per line), or any data file the task reads (CSV, TSV,
        JSON(L), Parquet, ... with the recipe's column names).

        Every line of a text file is an input, a blank one too (the model's answer for empty text): output row i
        is always line i + 1, so answers never slip against their inputs."""
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
            if not any(line.strip() for line in lines):
                raise HftkError(f"{p}: no inputs (the file is empty or blank); one input per line")
            return Records(str(p), [{col: t} for t in lines], list(range(1, len(lines) + 1)), [col])
        return self.task.read(p).whole()

    def records(self, inputs: list[str] | list[dict[str, Any]]) -> Records:
        """In-memory inputs: strings, or dicts keyed by the recipe's column names."""
        col = self.recipe.data.column(self.task.input_roles[0])
        rows = [x if isinstance(x, dict) else {col: x} for x in inputs]
        columns = list(dict.fromkeys(k for r in rows[:1000] for k in r))
        records = Records("<inputs>", rows, None, columns)
        for i, row in enumerate(rows):  # what the data readers refuse: no tokenizer or JSON encoder takes it
            if found := surrogate_in(row):
                raise not_unicode(records.where(i), found[1], found[0])
        return records

    # -- running ---------------------------------------------------------------------------------------
    def run(self, features: Features, **generate: Any) -> list[Any]:
        """The model's outputs for every feature, in feature order, batched shortest first. `generate`: keyword
        arguments of `model.generate` for a generating task (a streamer, stopping criteria), which its `forward`
        hands the batch to."""
        import torch

        ids = features["input_ids"]
        # Multiple choice: a feature is one sequence per choice, [choices, tokens]; batches are then 3-D, every
        # feature of one run with the same number of choices (the task checks), its length its longest choice.
        choices = len(ids[0]) if ids and ids[0] and isinstance(ids[0][0], list) else None
        lengths = [max(map(len, x)) if choices else len(x) for x in ids]
        order = sorted(range(len(ids)), key=lengths.__getitem__)
        names = [n for n in self.tokenizer.model_input_names if n in features]
        pad = {name: (self.tokenizer.pad_token_id or 0) if name == "input_ids" else 0 for name in names}
        for name, value in self.task.batch_columns.items():
            if name in features:
                names.append(name)
                pad[name] = value
        left = self.task.padding_side == "left"
        results: list[Any] = [None] * len(ids)
        # Long inputs show progress and an ETA on stderr; short ones stay quiet.
        progress = tqdm(total=len(ids), unit="input", desc="hftk", disable=len(ids) < PROGRESS_FROM, leave=False)
        with torch.inference_mode(), self.policy.autocast(), progress:
            for batch in token_batches(order, lengths, TOKENS_PER_BATCH // (choices or 1), self.max_batch_size):
                progress.update(len(batch))
                width = lengths[batch[-1]]
                tensors = {}
                for name in names:
                    arr = np.full((len(batch), *((choices,) if choices else ()), width), pad[name], dtype=np.int64)
                    for row, i in enumerate(batch):
                        values = features[name][i]
                        if choices:
                            for c, seq in enumerate(values):
                                arr[row, c, : len(seq)] = seq
                        elif left:
                            arr[row, width - len(values) :] = values
                        else:
                            arr[row, : len(values)] = values
                    tensors[name] = torch.from_numpy(arr).to(self.device)
                arrays = self.task.forward(self.model, {**tensors, **generate})
                for i, out in zip(batch, self.task.unbatch(arrays, [lengths[i] for i in batch])):
                    results[i] = out
        return results

    def predict(self, inputs: list[str] | list[dict[str, Any]] | Records, **options: Any) -> list[dict]:
        """One prediction dict per input, in input order. Options are the task's (e.g. top_k)."""
        if not isinstance(inputs, Records) and len(inputs) == 0:
            return []
        check_options(self.task, options)
        generate = {k: options.pop(k) for k in GENERATE_OPTIONS if k in options}
        records = inputs if isinstance(inputs, Records) else self.records(inputs)
        features = self.task.encode(records, with_targets=False)
        return self.task.postprocess(records, features, self.run(features, **generate), **options)

    def stream(
        self,
        input: str | dict[str, Any],
        on_text: Callable[[str], None],
        stop: threading.Event | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """One input's text generated, each piece handed to `on_text` (on this thread) as soon as it decodes into
        whole characters (transformers' TextStreamer), then its prediction as `predict` gives it, with `details`:
        why generation ended (TGI's finish reasons: `eos_token`, `length`) and the tokens generated. Setting
        `stop` ends generation at the next token (a client that went away)."""
        from transformers import StoppingCriteriaList

        if self.task.pipeline != "text-generation":
            raise HftkError(f"{self.model_ref}: only text generation streams; this model is {self.task.pipeline}")
        check_options(self.task, options)
        generate = {k: options.pop(k) for k in GENERATE_OPTIONS if k in options}
        records = self.records([input])
        features = self.task.encode(records, with_targets=False)
        stopping = StoppingCriteriaList([_Stopped(stop)] if stop is not None else [])
        streamer = _pieces(self.tokenizer, on_text)
        (new,) = self.run(features, streamer=streamer, stopping_criteria=stopping, **generate)
        (prediction,) = self.task.postprocess(records, features, [new], **options)
        eos = self.model.generation_config.eos_token_id
        ended = len(new) > 0 and int(new[-1]) in (eos if isinstance(eos, list) else [eos])
        reason = "stopped" if stop is not None and stop.is_set() else "eos_token" if ended else "length"
        return {**prediction, "details": {"finish_reason": reason, "generated_tokens": len(new)}}

    def evaluate(self, records: Records, report: str | Path | None = None) -> dict[str, float]:
        """The task's metrics on labelled records; `report`: a folder to write the evaluation report into too."""
        features = self.task.encode(records, with_targets=True)
        outputs = self.task.evaluation_outputs(self.model, features)
        if outputs is None:
            outputs = self.run(features)
        metrics = defined(self.task.score(records, features, outputs))  # NaN: undefined, as in training
        generated, sections = self.task.evaluate_generations(self.model, records)
        metrics |= generated
        if report is not None:
            page = self.task.evaluation_report(records, features, outputs, metrics, self.model_ref)
            page.sections += sections
            page.write(Path(report))
        return metrics


def _pieces(tokenizer: Any, on_text: Callable[[str], None]) -> Any:
    """transformers' TextStreamer (which holds back a piece until it decodes into whole characters or words),
    handing each piece of the answer, never the prompt, to `on_text` instead of printing it."""
    from transformers import TextStreamer

    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    streamer.on_finalized_text = lambda text, stream_end=False: on_text(text) if text else None
    return streamer


class _Stopped:
    """A stopping criterion (as `model.generate` calls one) that ends generation once `stop` is set."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.stop.is_set(), dtype=torch.bool, device=input_ids.device)


def _recipe_for(model_ref: str, task: str | None, options: dict[str, Any]) -> Recipe:
    """The recipe an hftk output directory saved, or one built from `task` for any other checkpoint.

    `task` is an hftk task or a pipeline task name (fill-mask, text-generation, summarization, translation, ...).
    """
    if task is not None:
        cls = get_task(task)  # an unknown name fails here, with did-you-mean
        if cls.pipeline_aliases and task != cls.name:  # seq2seq: summarization or translation
            options = {"pipeline": task, **options}
        task = cls.name
    saved = Path(model_ref) / "recipe.yaml"
    base: Recipe | dict[str, Any] = {"task": task, "model": model_ref, "data": {}}
    if saved.is_file():
        recipe = load_recipe(saved, trained=True)
        if task is None or task == recipe.task:
            unset = type(recipe).model_fields.keys() - recipe.model_fields_set  # keys its recipe.yaml lacks
            base = recipe.model_copy(update={k: v for k, v in OLD_DEFAULTS.items() if k in unset})
        # else: another task on the same weights, e.g. embeddings from a fine-tuned encoder
    elif task is None:
        tasks = ", ".join(sorted(pipeline_names()))
        if not Path(model_ref).is_dir():
            raise HftkError(
                f"{model_ref}: no model folder here; check the path, or name a hub id's task with --task ({tasks})"
            )
        raise HftkError(
            f"{model_ref}: not trained by hftk (no recipe.yaml), so its task is unknown; name it with --task ({tasks})"
        )
    name = base.task if isinstance(base, Recipe) else str(base["task"])
    fields = get_task(name).recipe_class.model_fields
    if not isinstance(base, Recipe):  # a checkpoint hftk did not train: read as transformers reads it
        base.update({k: v for k, v in OLD_DEFAULTS.items() if k in fields})
    for key, flag in _RECIPE_FLAGS.items():
        if key in options and key not in fields:
            raise HftkError(f"{flag}: only zero-shot-classification takes it; {model_ref} is used for {name}")
    if isinstance(base, Recipe) and not options:
        return base
    return load_recipe(base, options)


# Defaults that changed once recipe.yaml was saved with models: a folder whose recipe.yaml lacks the key was trained
# with the old value, and a checkpoint hftk did not train is read as transformers reads it.
OLD_DEFAULTS = {"long_inputs": "truncate"}


# Command-line flags that set a recipe field of one task, and the prediction options of `Task.postprocess`.
_RECIPE_FLAGS = {
    "candidate_labels": "--labels",
    "hypothesis_template": "--hypothesis-template",
    "multi_label": "--multi-label",
}
_OPTION_FLAGS = {"top_k": "--top-k", "aggregation_strategy": "--aggregation"}  # others: their own names
AGGREGATIONS = ("none", "simple", "first", "average", "max")
# Options of a generating task that `model.generate` takes (not its postprocess): at most the model's own setting,
# for which the prompt's truncation left room (a server's request may ask for less, never more).
GENERATE_OPTIONS = ("max_new_tokens",)  # token classification (--aggregation's choices)


def _count(value: Any, most: int | None = None) -> str | None:
    """What is wrong with `value` as a count (--top-k is an int flag, 1 or more), or None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return "must be a whole number"
    if value < 1:
        return "must be 1 or more"
    if most is not None and value > most:
        return f"must be {most} or fewer"
    return None


def _option_problem(task: Task | None, key: str, value: Any) -> str | None:
    if key == "top_k":
        return _count(value, task.max_top_k if task is not None else None)
    if key == "max_answer_length":
        return _count(value)
    if key == "max_new_tokens":
        settings = task.generation_settings() if task is not None else None
        return _count(value, settings.max_new_tokens if settings is not None else None)
    if key == "windows" and not isinstance(value, bool):
        return "must be true or false"
    if key == "aggregation_strategy" and value not in AGGREGATIONS:
        return f"must be one of {', '.join(AGGREGATIONS)}"
    return None


def check_options(task: Task | None, options: dict[str, Any], *, flags: bool = True) -> None:
    """Every prediction option checked by the rules of its command-line flag (a count is a whole number, 1 or
    more; an aggregation one of the flag's choices), from the command line, the library or the server's JSON
    alike; an option the task's predictions do not take is an error, not silently ignored. `task` None: the
    values only (before a model loads). `flags`: name options as the command line's flags (`--top-k 0: ...`),
    else by their own names with the JSON value (`top_k: ..., got "2"`: the server's)."""
    names = _OPTION_FLAGS if flags else {}
    if task is not None:
        taken = [p.name for p in inspect.signature(task.postprocess).parameters.values() if p.kind is p.KEYWORD_ONLY]
        if task.generation_settings() is not None:
            taken += GENERATE_OPTIONS
        for key in options:
            if key not in taken:
                them = ", ".join(names.get(t, t) for t in taken) or "none"
                raise HftkError(
                    f"{names.get(key, key)}: {task.pipeline} predictions do not take it (their options: {them})"
                )
    for key, value in options.items():
        if value is None or (problem := _option_problem(task, key, value)) is None:
            continue
        if flags:
            raise HftkError(f"{names.get(key, key)} {value}: {problem}")
        raise HftkError(f"{key}: {problem}, got {json.dumps(value, default=repr)[:80]}")


def _check_head(model_ref: str, task: Task, config: Any) -> None:
    """A checkpoint without a trained head of the task's kind would predict from random weights: refuse it. For an
    hftk folder that means its recipe.yaml and config.json disagree (a damaged or hand-edited folder)."""
    if (problem := task.disagreement(config)) is not None:
        raise HftkError(f"{model_ref}: {problem}: the folder's files disagree (damaged or edited); restore it")
    if lora.is_unmerged(Path(model_ref)) or (problem := task.head_problem(config)) is None:
        return
    if (Path(model_ref) / "recipe.yaml").is_file():
        raise HftkError(
            f"{model_ref}: recipe.yaml says task {task.name} but config.json holds {problem}: the folder's files "
            "disagree (damaged or edited); restore it"
        )
    raise HftkError(
        f"{model_ref}: {problem}, so its predictions would be random; fine-tune it first (hftk train), or pick "
        "the task its head was trained for"
    )


def token_batches(order: list[int], lengths: list[int], tokens: int, max_size: int) -> Iterator[list[int]]:
    """Consecutive runs of `order` whose padded size (count x longest) stays within `tokens`."""
    batch: list[int] = []
    for i in order:
        if batch and ((len(batch) + 1) * lengths[i] > tokens or len(batch) >= max_size):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch
