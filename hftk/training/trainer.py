"""hftk's Trainer: transformers' Trainer (or Seq2SeqTrainer) with what every task needs for exact, resumable runs.

- Evaluation in dataset order: the tasks' metrics line outputs up with features by position.
- Each epoch's training order drawn from (seed, epoch) alone, so a resumed run sees the batches of the run it
  continues, on every process.
- No pickles saved (`training_args.bin`); the recipe says the same in YAML.
- For tasks that generate: the recipe's `generation:` settings kept in the model's generation config.
- For tasks evaluated by loss (language models): perplexity, on the same seeded masks every time, from a loss
  computed a few rows at a time (no batch's logits held whole, none kept).
- For tasks with class weights (the recipe's `class_weights`): a weighted loss on the model's logits.
- For long documents trained per document (`windows.loss: document`): batches of whole documents, each document's
  loss taken on its windows' pooled logits.
- For tasks with a loss of their own (`Task.training_loss`: DPO's): that loss on the task's batches, in training and
  evaluation alike.

The classes live here at module level; `build_trainer` picks one from what the task says it evaluates.
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset
from torch.utils.data import DataLoader, Sampler, SequentialSampler
from transformers import (
    EarlyStoppingCallback,
    PrinterCallback,
    ProgressCallback,
    Seq2SeqTrainer,
    Trainer,
    TrainerCallback,
)
from transformers.trainer_pt_utils import LengthGroupedSampler

from hftk.errors import HftkError
from hftk.features.collators import BlockCollator, nll_per_row
from hftk.files import share
from hftk.tasks import Task
from hftk.tasks.metrics import defined, is_reason, perplexity, why_undefined


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """Trainer's length-grouped sampler, its shuffle drawn from (seed, epoch) instead of the global RNG.

    The global RNG's state when an epoch starts depends on everything drawn before (dropout masks included): a
    run resumed mid-way through epoch 2 would see other batches than the run it continues. Seeding each epoch,
    as accelerate does for plain random sampling, also makes every process of a distributed run agree.

    The order within each mega-batch stays Trainer's (longest batch to shortest). Shuffling the batches instead
    was measured and dropped: +0.5 points of SST-2 accuracy but -9 points of STS-B Pearson on short runs
    (bench/RESULTS.md).
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # called by accelerate's DataLoaderShard before each epoch
        self.epoch = epoch

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()


class DocumentBatches(Sampler[list[int]]):
    """Batches of whole documents' windows (the features' `example`), for a loss taken per document: documents in
    the length-grouped order of `EpochSeededLengthGroupedSampler` (by their token count), as many a batch as fit
    `batch_size` windows when each has the most any has. Deterministic from (seed, epoch), so a resumed run sees
    the batches of the run it continues; under DDP accelerate deals whole batches to the processes."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int) -> None:
        example = np.asarray(dataset.with_format("numpy")["example"])
        tokens = pc.list_value_length(dataset.with_format("arrow")["input_ids"]).to_numpy()
        documents, count = np.unique(example, return_counts=True)
        order = np.argsort(example, kind="stable")
        self.windows = np.split(order, np.cumsum(count)[:-1])  # each document's windows, in order
        lengths = np.bincount(np.searchsorted(documents, example), weights=tokens).astype(int).tolist()
        self.per_batch = max(1, batch_size // int(count.max(initial=1)))
        self.sampler = EpochSeededLengthGroupedSampler(self.per_batch, lengths, seed)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        chosen = list(self.sampler)
        for i in range(0, len(chosen), self.per_batch):
            yield np.concatenate([self.windows[d] for d in chosen[i : i + self.per_batch]]).tolist()

    def __len__(self) -> int:
        return math.ceil(len(self.windows) / self.per_batch)


class HftkTrainerMixin:
    """What hftk adds to a transformers Trainer class (see the module docstring).

    Args (keyword, beside Trainer's own):
        generation: GenerationSettings written into the model's generation config, or None.
        perplexity: add `<prefix>_perplexity` = exp(loss) to every evaluation, with seeded masks.
        class_weights: per-class loss weights (`Task.loss_weights`), or None for the model's own loss.
        document_loss: the pooling of a document's windows' logits for a loss per document
            (`Task.document_loss`), or None for each feature's own.
        task_loss: the task's own loss (`Task.training_loss`: DPO's), or None.
    """

    def __init__(
        self,
        *args: Any,
        generation: Any = None,
        perplexity: bool = False,
        class_weights: Any = None,
        document_loss: str | None = None,
        task_loss: Callable[[Any, dict[str, Any]], tuple[Any, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.generation = generation
        self.perplexity = perplexity
        self.class_weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        self.document_loss = document_loss
        self.task_loss = task_loss
        if self.class_weights is not None or document_loss is not None or task_loss is not None:
            # classification_loss is a per-batch mean, like the classification heads' own losses: Trainer divides
            # it by the gradient-accumulation steps, and DDP averages the gradients over processes.
            self.loss_is_scaled_for_ga = False
        self._apply_generation()

    def _apply_generation(self) -> None:
        if self.generation is not None:
            self.generation.apply(self.model)

    # -- order -----------------------------------------------------------------------------------------
    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        # With group_by_length, Trainer would shuffle evaluation batches by length; hftk's evaluation splits are
        # sorted by length already. Distributed evaluation keeps accelerate's sharding (gathered in order).
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is LengthGroupedSampler:
            return EpochSeededLengthGroupedSampler(sampler.batch_size, sampler.lengths, self._data_seed)
        return sampler

    @property
    def _data_seed(self) -> int:
        return self.args.data_seed if self.args.data_seed is not None else self.args.seed

    def get_train_dataloader(self) -> Any:
        if self.document_loss is None:
            return super().get_train_dataloader()
        self._set_signature_columns_if_needed()
        keep = {*self._signature_columns, "example"}  # the document of each window, which the loss pools by
        dataset = self.train_dataset.select_columns([c for c in self.train_dataset.column_names if c in keep])
        batches = DocumentBatches(dataset, self._train_batch_size, self._data_seed)
        loader = DataLoader(
            dataset,
            batch_sampler=batches,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )
        return self.accelerator.prepare(loader)

    # -- saving ----------------------------------------------------------------------------------------
    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        super()._save(output_dir, state_dict)
        # training_args.bin is a pickle (loading it can run code); the recipe says the same in YAML.
        Path(output_dir or self.args.output_dir, "training_args.bin").unlink(missing_ok=True)

    def save_model(self, *args: Any, **kwargs: Any) -> None:
        self._apply_generation()
        super().save_model(*args, **kwargs)

    # -- evaluation ------------------------------------------------------------------------------------
    def prediction_step(self, *args: Any, **kwargs: Any) -> Any:
        # Seq2SeqTrainer fills the config's unset values with defaults (max_length=20) after each generation:
        # the recipe's settings go back in before the next one.
        self._apply_generation()
        return super().prediction_step(*args, **kwargs)

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None, **kwargs):
        # The same masks every evaluation: perplexity before and after training is measured on equal terms.
        collator = self.data_collator
        seeded = self.perplexity and isinstance(collator, BlockCollator)
        with collator.seeded(self.args.seed) if seeded else nullcontext():
            output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, **kwargs)
        prefix = kwargs.get("metric_key_prefix", "eval")
        loss = output.metrics.get(f"{prefix}_loss")
        if self.perplexity and loss is not None:
            output.metrics[f"{prefix}_perplexity"] = perplexity(loss)
        defined(output.metrics)  # a NaN loss or metric is undefined (None, with why), as the tasks' own are
        return output

    def _determine_best_metric(self, metrics: dict[str, Any], trial: Any) -> bool:
        # An undefined metric (None) is no evaluation's best: the model saved stays the best one measured.
        key = self.args.metric_for_best_model or ""
        if metrics.get(key if key.startswith("eval_") else f"eval_{key}", 0) is None:
            return False
        return super()._determine_best_metric(metrics, trial)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.task_loss is not None:
            loss, outputs = self.task_loss(model, inputs)
            return (loss, outputs) if return_outputs else loss
        if self.perplexity and not model.training and "labels" in inputs:
            return self._language_model_loss(model, inputs, return_outputs)
        documents = inputs.get("example") if model.training else None  # batches of whole documents
        if (self.class_weights is None and documents is None) or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        # The model's logits, hftk's loss: without labels the model computes none of its own.
        # num_items_in_batch is not used (see __init__).
        inputs = {k: v for k, v in inputs.items() if k != "example"}
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs["logits"]
        if documents is not None:
            logits, labels = pool_documents(logits, labels, documents, str(self.document_loss))
        loss = classification_loss(logits, labels, self.class_weights)
        return (loss, outputs) if return_outputs else loss

    def _language_model_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
        """Evaluating a language model: the batch's mean negative log-likelihood over the tokens it predicts (the
        model's own loss) from `nll_per_row`, which never holds the batch's vocabulary-sized logits. The outputs
        are each row's (summed NLL, tokens): Trainer keeps no logits.

        (transformers 5 would also divide by every label token, counting each block's first one, which a causal
        LM never predicts: a loss ~1/max_length too low.)"""
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        shift = isinstance(self.data_collator, BlockCollator) and self.data_collator.masking is None  # causal
        rows = torch.from_numpy(nll_per_row(model, inputs, labels, shift=shift))  # float64, on the CPU
        loss = (rows[:, 0].sum() / rows[:, 1].sum().clamp(min=1)).float().to(labels.device)
        return (loss, {"loss": loss, "nll": rows.float().to(labels.device)}) if return_outputs else loss


def pool_documents(
    logits: torch.Tensor, labels: torch.Tensor, example: torch.Tensor, how: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each document's logits pooled from its windows' (`example`: each window's document), as evaluation and
    `predict` pool them (documents.pool), with the document's label."""
    _, which = torch.unique(example, return_inverse=True)
    docs = int(which.max()) + 1
    index = which.view(-1, *([1] * (logits.dim() - 1))).expand_as(logits)
    reduce = "amax" if how == "max" else "mean"
    pooled = logits.new_zeros(docs, *logits.shape[1:]).scatter_reduce(0, index, logits, reduce, include_self=False)
    first = torch.full((docs,), len(which), device=which.device).scatter_reduce(
        0, which, torch.arange(len(which), device=which.device), "amin"
    )
    return pooled, labels[first]


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """The classification loss as the transformers heads compute it, with per-class weights when given.

    Regression (one output, float labels): mean squared error. Multi-label (float labels shaped like the logits):
    BCE with logits, `weights` as `pos_weight`, mean over every label of every row. Otherwise (single-label, NER)
    cross-entropy with `weights` as `weight`, labels -100 ignored: torch's weighted mean, the weighted sum divided
    by the summed weights of the targets.
    """
    logits = logits.float()
    weights = None if weights is None else weights.to(logits.device)
    if labels.is_floating_point() and logits.shape[-1] == 1 and labels.shape != logits.shape:
        return torch.nn.functional.mse_loss(logits.view(-1), labels.float().view(-1))
    if labels.is_floating_point() and labels.shape == logits.shape:
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weights)
    flat = logits.view(-1, logits.shape[-1])
    return torch.nn.functional.cross_entropy(flat, labels.view(-1), weight=weights, ignore_index=-100)


class HftkTrainer(HftkTrainerMixin, Trainer):
    """Trainer for tasks evaluated on their outputs or their loss."""


class HftkSeq2SeqTrainer(HftkTrainerMixin, Seq2SeqTrainer):
    """Seq2SeqTrainer (generation during evaluation) for tasks evaluated on what they generate."""


class StartStep(TrainerCallback):
    """Remembers the step this process started at: 0, or the checkpoint's step when resumed."""

    step: int = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.step = state.global_step  # Trainer has loaded the checkpoint's state by now


class EvaluationReport(TrainerCallback):
    """Hands each evaluation's score of a trial's run to the search (`send(value, step)`), which may stop the run
    by raising (Optuna's pruning) or by its own means (Ray's schedulers)."""

    def __init__(self, send: Callable[[float, int], None]) -> None:
        self.send = send
        self.steps: set[int] = set()

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None, **_: Any) -> None:
        key = args.metric_for_best_model
        value = (metrics or {}).get(key if key.startswith("eval_") else f"eval_{key}")
        if value is None or state.global_step in self.steps:  # the final evaluation repeats the best step's
            return
        self.steps.add(state.global_step)
        self.send(float(value), state.global_step)


class ShareCheckpoint(TrainerCallback):
    """A saved checkpoint gets the user's umask (safetensors writes its weights 0600): see `files.share`."""

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            share(folder)


class StopOnNonFiniteLoss(TrainerCallback):
    """Stops a run whose training loss or gradient norm became NaN or infinite, with an error: such a model
    would be saved and predict NaN. Checked at every log (logging_steps) and at the end."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        for name in ("loss", "grad_norm", "train_loss"):
            try:  # a float, or its text where another callback formatted the logs for printing
                value = float((logs or {})[name])
            except (KeyError, TypeError, ValueError):
                continue
            if not math.isfinite(value):
                raise HftkError(
                    f"step {state.global_step}: the training {name.replace('_', ' ')} is {value}; the run stopped "
                    "and saved no model. Lower training.learning_rate, check the labels, or use precision: fp32"
                )


def build_trainer(
    task: Task,
    model: Any,
    args: Any,
    features: dict[str, Any],
    metric_fn: Any,
    *,
    early_stopping_patience: int | None,
    pad_to_multiple_of: int | None,
) -> tuple[Trainer, StartStep]:
    """The Trainer for `task`, over datasets in `features` ("train", and "validation" when there is one)."""
    collator = task.collator(pad_to_multiple_of)
    task_loss = task.training_loss()
    if task_loss is not None:  # the model computes no loss of its own: nothing to count items for
        model.accepts_loss_kwargs = False
    elif not hasattr(model, "accepts_loss_kwargs"):  # a model class that declares it knows best
        model.accepts_loss_kwargs = loss_counts_items(model, collator, features["train"])
    start = StartStep()
    callbacks: list[Any] = [start, StopOnNonFiniteLoss(), ShareCheckpoint()]
    if "logging_steps" not in task.recipe.training:
        callbacks.append(CurvePoints())
    has_eval = "validation" in features
    if early_stopping_patience and has_eval:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience))
    cls = HftkSeq2SeqTrainer if task.evaluates == "generation" else HftkTrainer
    trainer = cls(
        model=model,
        args=args,
        train_dataset=features["train"],
        eval_dataset=features.get("validation"),
        processing_class=task.tokenizer,
        data_collator=collator,
        compute_metrics=metric_fn,
        callbacks=callbacks,
        generation=task.generation_settings(),
        perplexity=task.evaluates == "loss",
        class_weights=task.loss_weights(),
        document_loss=task.document_loss(),
        task_loss=task_loss,
    )
    # transformers prints logged floats as quoted text ('loss': '0.6924'); these print them as numbers.
    if trainer.pop_callback(ProgressCallback) is not None:  # progress bars on (the default)
        trainer.add_callback(Progress())
    if trainer.pop_callback(PrinterCallback) is not None:  # disable_tqdm: true
        trainer.add_callback(Printer())
    return trainer, start


class CurvePoints(TrainerCallback):
    """hftk's default of a log every 50 steps leaves a short run with few points or none (a 4-step run drew an
    empty curve): runs under 2,500 steps log every max_steps / 50 steps instead, every step under 100."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.max_steps > 0:
            state.logging_steps = max(1, min(state.logging_steps, state.max_steps // 50))


class Progress(ProgressCallback):
    """Trainer's progress bar, with the logs written beside it."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if state.is_world_process_zero and self.training_bar is not None and logs:
            self.training_bar.write(_shown(logs))


class Printer(PrinterCallback):
    """The logs, one line each, when progress bars are off."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if state.is_local_process_zero and logs:
            print(_shown(logs))


def _shown(logs: dict[str, Any]) -> str:
    """Logged numbers as numbers with 4 significant digits: {'loss': 0.6924, 'learning_rate': 5e-05}; an undefined
    metric as 'undefined (why)'."""

    def one(k: str, v: Any) -> Any:
        if isinstance(v, float):
            return float(f"{v:.4g}")
        why = why_undefined(logs, k)
        return f"undefined ({why})" if why else v

    return str({k: one(k, v) for k, v in logs.items() if k != "total_flos" and not is_reason(k, v)})


def loss_counts_items(model: Any, collator: Any, dataset: Any) -> bool:
    """Whether the model's loss is divided by the `num_items_in_batch` Trainer passes to forward.

    Trainer (transformers 5) assumes so for any forward that takes `**kwargs`, then multiplies the loss by
    the number of processes and skips dividing it by the gradient-accumulation steps. Most heads
    (sequence and token classification, QA, BERT's masked LM) take a plain mean and ignore the count: under
    DDP their loss, gradients and reported losses came out multiplied by the number of processes. Causal LM
    heads do use it. Two forward passes on the same two training rows tell which kind this model is.
    """
    names = set(inspect.signature(model.forward).parameters) | {"labels"}
    rows = [{k: v for k, v in row.items() if k in names} for row in itertools.islice(iter(dataset), 2)]
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():  # leaves the seeded RNG streams as they were
            batch = collator(rows)
            if "labels" not in batch:
                return False
            model.eval()
            one = model(**batch, num_items_in_batch=torch.tensor(1)).loss
            two = model(**batch, num_items_in_batch=torch.tensor(2)).loss
    except (TypeError, ValueError, RuntimeError, AttributeError):
        return False  # a forward that rejects the count cannot use it
    finally:
        model.train(was_training)
    return bool(torch.isfinite(one) and not torch.allclose(one, two))
