"""The output directory: refused when it holds another run, then written whole or not at all.

What a trained model directory holds besides the model itself (model card, training curve, metrics, the resolved
recipe) is written here too, into a staging folder that `files.replace_model` moves into place.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from hftk import lora
from hftk.errors import HftkError
from hftk.files import LOCK, STAGING, replace_model
from hftk.models import removed_pipelines
from hftk.recipe import Recipe, dump_recipe
from hftk.tasks import Task


def check_output_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse a non-empty output directory unless told to resume or overwrite. Reads only: `train` deletes
    old checkpoints for --overwrite later, on rank 0, once every process has checked."""
    if out.exists() and not out.is_dir():
        raise HftkError(f"{out}: exists and is not a directory; choose another output_dir or --output")
    if not out.exists() or not any(p.name != LOCK for p in out.iterdir()) or resume or overwrite:
        return
    raise HftkError(
        f"{out}: output directory is not empty; pass --resume to continue that run, "
        "--overwrite to replace it, or --output NEW_DIR"
    )


def write_output(trainer: Any, recipe: Recipe, task: Task, metrics: dict[str, Any], out: Path) -> None:
    """Write the final model and run files into a staging folder, then move them into place.

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
    if recipe.peft is None:
        trainer.save_model(str(staging))  # safetensors weights, config with id2label, tokenizer files
    elif main:  # the adapter in adapter/, and the merged model (or only its config) at the top
        lora.save(trainer.model, staging, merge=recipe.peft.merge)
        task.tokenizer.save_pretrained(str(staging))
    if main:
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        (staging / "recipe.yaml").write_text(dump_recipe(recipe), encoding="utf-8")
        (staging / "README.md").write_text(model_card(recipe, task, metrics), encoding="utf-8")
        plot_curve(trainer.state.log_history, task.main_metric, staging / "training_curve.png")
        replace_model(staging, out)
    trainer.accelerator.wait_for_everyone()  # no process returns before the model is in place


def model_card(recipe: Recipe, task: Task, metrics: dict[str, Any]) -> str:
    """A Hub-style README.md: metadata header, metrics table, how to load it."""
    base = recipe.model if "/" in recipe.model and not recipe.model.startswith((".", "/")) else None
    header = ["---", "library_name: transformers", f"pipeline_tag: {task.pipeline}", "tags: [hftk]"]
    if base:
        header.append(f"base_model: {base}")
    header.append("---")
    rows = []
    for split in ("eval_start", "eval", "test"):  # eval_start: before training, when evaluated then
        for key, value in (metrics.get(split) or {}).items():
            name = key.split("_", 1)[1] if "_" in key else key
            if isinstance(value, float) and name not in ("runtime", "samples_per_second", "steps_per_second", "epoch"):
                rows.append(f"| {split} | {name} | {value:.4f} |")
    train = metrics.get("train", {})
    device = metrics.get("device", {})
    lines = [
        *header,
        "",
        f"# {Path(recipe.output_dir).name}",
        "",
        f"`{recipe.model}` fine-tuned for **{task.pipeline}** with hftk (recipe: `recipe.yaml` in this folder).",
        "",
        "## Metrics",
        "",
        "| split | metric | value |",
        "|---|---|---|",
        *rows,
        "",
        f"Trained on {device.get('device', '?')} ({device.get('precision', '?')}) in "
        f"{train.get('train_runtime', 0):.0f} s, {train.get('train_samples_per_second', 0):.1f} samples/s.",
        "",
        "## Use",
        "",
        *_use(task.pipeline, recipe.output_dir),
        "",
        f"or `hftk predict {recipe.output_dir} --input FILE --output predictions.jsonl`.",
        "",
    ]
    return "\n".join(lines)


def _use(pipeline_task: str, output_dir: str) -> list[str]:
    if pipeline_task not in removed_pipelines():
        return [
            "```python",
            "from transformers import pipeline",
            f'pipe = pipeline("{pipeline_task}", model="{output_dir}")',
            "```",
        ]
    return [
        "```python",
        "import hftk  # transformers 5 removed this pipeline; hftk.pipeline has its call and outputs",
        f'pipe = hftk.pipeline("{pipeline_task}", model="{output_dir}")',
        "```",
        "",
        f'With transformers 4.x, `transformers.pipeline("{pipeline_task}", model=...)` loads this folder as is.',
    ]


def plot_curve(log_history: list[dict[str, Any]], metric: str, path: Path) -> None:
    """Training loss and the eval metric by step, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loss = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    evals = [(h["step"], h[f"eval_{metric}"]) for h in log_history if f"eval_{metric}" in h]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if loss:
        ax.plot(*zip(*loss), label="train loss", color="tab:blue")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if evals:
        ax2 = ax.twinx()
        ax2.plot(*zip(*evals), "o-", label=f"eval {metric}", color="tab:orange")
        ax2.set_ylabel(metric)
        ax2.legend(loc="upper right")
    if loss:
        ax.legend(loc="upper left")
    ax.set_title("training curve")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
