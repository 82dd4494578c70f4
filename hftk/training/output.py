"""The output directory: refused when it holds another run, then written whole or not at all.

What a trained model directory holds besides the model itself (model card, training curve, metrics, the resolved
recipe) is written here too, into a staging folder that `files.replace_model` moves into place.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hftk.config.reading import dump_recipe
from hftk.config.recipe import Recipe
from hftk.errors import HftkError
from hftk.files import CHECKPOINTS, LOCK, STAGING, replace_model
from hftk.models import lora
from hftk.report import Report
from hftk.report.page import TIMINGS
from hftk.tasks import Task
from hftk.tasks.metrics import why_undefined

logger = logging.getLogger("hftk")

REPORT = "report"  # the validation's evaluation report, in the output folder


def check_output_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse a non-empty output directory unless told to resume or overwrite. Reads only: `train` deletes
    old checkpoints for --overwrite later, on rank 0, once every process has checked."""
    if out.exists() and not out.is_dir():
        raise HftkError(f"{out}: exists and is not a directory; choose another output_dir or --output")
    if not out.exists() or not any(_holds_something(p) for p in out.iterdir()) or resume or overwrite:
        return
    raise HftkError(
        f"{out}: output directory is not empty; pass --resume to continue that run, "
        "--overwrite to replace it, or --output NEW_DIR"
    )


def remove_whole(paths: Iterable[Path]) -> None:
    """Remove every path, or none: each is checked removable before the first goes, so a failure loses nothing.
    A symbolic link is removed itself, never followed (what it points to may be outside the folder).

    Raises:
        HftkError: naming the first entry that cannot be removed, before anything is.
    """
    paths = [p for p in paths if p.is_symlink() or p.exists()]
    for path in paths:
        if (problem := _removal_problem(path)) is not None:
            raise HftkError(
                f"{problem}: cannot be removed (permissions, or an immutable file); nothing was removed: fix it, "
                "or choose another --output"
            )
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _removal_problem(path: Path) -> Path | None:
    """The first entry at or below `path` that cannot be unlinked: in a folder that is not writable (what a user
    without rights meets), or immutable or append-only (what stops even root)."""
    full = os.R_OK | os.W_OK | os.X_OK
    if not os.access(path.parent, os.W_OK | os.X_OK) or _immutable(path):
        return path
    if path.is_symlink() or not path.is_dir():
        return None
    if not os.access(path, full):
        return path
    for folder, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            entry = Path(folder) / name
            if _immutable(entry) or (name in dirs and not entry.is_symlink() and not os.access(entry, full)):
                return entry
    return None


def _immutable(path: Path) -> bool:
    """Linux's immutable or append-only flag (chattr +i / +a): such an entry cannot be unlinked, even by root."""
    try:
        import array
        import fcntl

        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except (ImportError, OSError):  # not Linux, a link, or unreadable (the folder check speaks for it)
        return False
    try:
        flags = array.array("l", [0])
        fcntl.ioctl(fd, 0x80086601, flags)  # FS_IOC_GETFLAGS
        return bool(flags[0] & 0x30)  # FS_IMMUTABLE_FL | FS_APPEND_FL
    except OSError:  # a file system without these flags
        return False
    finally:
        os.close(fd)


def _holds_something(path: Path) -> bool:
    """What makes an output folder a run's: not a lock, not the empty checkpoints/ of a run that failed at once."""
    if path.name == LOCK:
        return False
    return not (path.name == CHECKPOINTS and path.is_dir() and not any(path.iterdir()))


def relocate(folder: Path, target: Path) -> None:
    """Move the model of run folder `folder` into `target` (replacing the model there; not through a link), its
    card and recipe.yaml naming the new place; the checkpoints stay behind."""
    if target.is_symlink():
        target.unlink()
    target.mkdir(exist_ok=True)
    remove_whole([folder / CHECKPOINTS])
    for name in ("README.md", "recipe.yaml"):
        path = folder / name
        if path.is_file():
            path.write_text(path.read_text(encoding="utf-8").replace(str(folder), str(target)), encoding="utf-8")
    replace_model(folder, target)


def write_output(
    trainer: Any, recipe: Recipe, task: Task, metrics: dict[str, Any], out: Path, report: Report | None = None
) -> None:
    """Write the final model and run files (and the validation's report, in report/) into a staging folder, then
    move them into place.

    Called on every process: with FSDP or DeepSpeed, gathering the full weights to save is collective. Only
    rank 0 writes. A crash before the moves leaves the previous contents untouched, and `replace_model` never
    leaves old and new files mixed in a folder that loads.
    """
    main = trainer.is_world_process_zero()
    staging = out / STAGING
    if main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    trainer.accelerator.wait_for_everyone()
    task.configure(trainer.model)  # what the task learnt after training (tuned thresholds) into config.json
    if recipe.peft is None:
        trainer.save_model(str(staging))  # safetensors weights, config with id2label, tokenizer files
    elif main:  # the adapter in adapter/, and the merged model (or only its config) at the top
        lora.save(trainer.model, staging, merge=recipe.peft.merge)
        task.tokenizer.save_pretrained(str(staging))
    if main:
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        (staging / "recipe.yaml").write_text(dump_recipe(recipe), encoding="utf-8")
        if report is not None:
            report.write(staging / REPORT)
        card = model_card(recipe, task, metrics, trainer.args, report)
        (staging / "README.md").write_text(card, encoding="utf-8")
        plot_curve(trainer.state.log_history, task.main_metric, staging / "training_curve.png")
        replace_model(staging, out)
        if report is None:  # an earlier run's report is not this model's
            remove_whole([out / REPORT])
        if not recipe.keep_checkpoints:  # only once the model is whole in place
            try:
                remove_whole([out / CHECKPOINTS])
            except HftkError as e:  # the model is saved: what is left is only disk space
                logger.warning("hftk: the checkpoints were kept: %s", e)
    trainer.accelerator.wait_for_everyone()  # no process returns before the model is in place


def model_card(
    recipe: Recipe, task: Task, metrics: dict[str, Any], args: Any = None, report: Report | None = None
) -> str:
    """A Hub-style README.md: metadata, what the model answers, the data and settings it was trained with, its
    metrics, and how to load it. Local paths appear by their last part only (the card travels with the folder)."""
    local = recipe.model.startswith((".", "/", "package:")) or Path(recipe.model).exists()
    base = recipe.model if not local or recipe.model.startswith("package:") else Path(recipe.model).name
    name = Path(recipe.output_dir).name
    header = card_metadata(recipe, task, metrics, None if local else recipe.model)
    rows = [
        f"| {split} | {metric} | {f'{value:.4f}' if why is None else f'undefined: {why}'} |"
        for split in ("eval_start", "eval", "test")  # eval_start: before training, when evaluated then
        for metric, value, why in _metrics_of(metrics.get(split))
    ]
    train = metrics.get("train", {})
    device = metrics.get("device", {})
    lines = [
        "---",
        header.to_yaml(),
        "---",
        "",
        f"# {name}",
        "",
        f"`{base}` fine-tuned for **{task.pipeline}** with hftk (recipe: `recipe.yaml` in this folder).",
        "",
        *task.card_lines("labels"),
        "## Training",
        "",
        *_training(metrics, args),
        *task.card_lines("training"),
        f"Trained on {device.get('device', '?')} ({device.get('precision', '?')}) in "
        f"{train.get('train_runtime', 0):.0f} s, {train.get('train_samples_per_second', 0):.1f} samples/s"
        + (f"; the saved model is the best checkpoint, step {train['best_step']}." if "best_step" in train else "."),
        "",
        "## Metrics",
        "",
        "| split | metric | value |",
        "|---|---|---|",
        *rows,
        "",
        *(report.card_lines(REPORT) if report is not None else []),
        "## Use",
        "",
        *task.use_lines(recipe.output_dir),
        "",
    ]
    return "\n".join(lines)


def card_metadata(
    recipe: Recipe,
    task: Task,
    metrics: dict[str, Any],
    base_model: str | None,
    splits: dict[str, str] | None = None,
) -> Any:
    """The card's YAML metadata as the Hub reads it (`huggingface_hub.ModelCardData`): pipeline, base model,
    language, license, datasets and the final evaluation as model-index results, under `splits`' names.

    A model-index result needs a value (huggingface_hub cannot read one back without), so undefined metrics are
    listed apart, under `undefined_metrics`, each with `value: null` and its reason."""
    from huggingface_hub import EvalResult, ModelCardData

    card = recipe.card
    dataset = card.datasets[0] if card.datasets else Path(str(recipe.data.validation or recipe.data.train)).stem
    named = [
        (name, metric, value, why)
        for split, name in (splits or {"eval": "validation", "test": "test"}).items()
        for metric, value, why in _metrics_of(metrics.get(split))
    ]
    results = [
        EvalResult(
            task_type=task.pipeline,
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split=name,
            metric_type=metric,
            metric_value=value,
        )
        for name, metric, value, why in named
        if why is None
    ]
    undefined = [{"split": n, "metric": m, "value": None, "reason": why} for n, m, _, why in named if why is not None]
    return ModelCardData(
        library_name="transformers",
        pipeline_tag=task.pipeline,
        tags=["hftk", *card.tags],
        base_model=base_model if base_model and "/" in base_model else None,
        language=card.language,
        license=card.license,
        datasets=card.datasets or None,
        model_name=Path(recipe.output_dir).name if results else None,
        eval_results=results or None,
        undefined_metrics=undefined or None,
    )


def _metrics_of(split: dict[str, Any] | None) -> list[tuple[str, float | None, str | None]]:
    """(metric, value, why it is undefined) of one split's evaluation, without its prefix and without timings;
    an undefined metric has the value None."""
    out: list[tuple[str, float | None, str | None]] = []
    for key, value in (split or {}).items():
        metric = key.split("_", 1)[1] if "_" in key else key
        if metric in TIMINGS:
            continue
        if isinstance(value, float):
            out.append((metric, value, None))
        elif (why := why_undefined(split or {}, key)) is not None:
            out.append((metric, None, why))
    return out


def _training(metrics: dict[str, Any], args: Any) -> list[str]:
    sizes = metrics.get("data") or {}
    out = []
    if sizes:
        out.append("Data: " + ", ".join(f"{split} {n:,} rows" for split, n in sizes.items()) + ".")
    if held := metrics.get("held_out"):
        out.append(
            f"Validation: {held['fraction']:g} of the training data (`{Path(held['source']).name}`) held out, "
            f"{held['split']}, seed {held['seed']}; the model never trained on it."
        )
    if args is not None:
        n, unit = (args.max_steps, "step") if args.max_steps > 0 else (args.num_train_epochs, "epoch")
        length = f"{n:g} {unit}" + "s" * (n != 1)
        batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
        out.append(
            f"Settings: {length}, batch {batch}, learning rate {args.learning_rate:g}, warmup {args.warmup_steps} "
            f"steps, weight decay {args.weight_decay:g}, seed {args.seed}."
        )
    return [*out, ""] if out else []


def plot_curve(log_history: list[dict[str, Any]], metric: str, path: Path) -> None:
    """Training and eval loss, and the eval metric, by step: one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def points(key: str) -> list[tuple[int, float]]:  # undefined values (None) are no points
        return [(h["step"], h[key]) for h in log_history if h.get(key) is not None and "step" in h]

    loss, eval_loss = points("loss"), points("eval_loss")
    evals = points(f"eval_{metric}") if metric != "loss" else []
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if loss:
        ax.plot(*zip(*loss), label="train loss", color="tab:blue")
    if eval_loss:
        ax.plot(*zip(*eval_loss), "s--", label="eval loss", color="tab:green")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if evals:
        ax2 = ax.twinx()
        ax2.plot(*zip(*evals), "o-", label=f"eval {metric}", color="tab:orange")
        ax2.set_ylabel(metric)
        ax2.legend(loc="upper right")
    if loss or eval_loss:
        ax.legend(loc="upper left")
    ax.set_title("training curve")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
