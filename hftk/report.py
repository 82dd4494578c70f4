"""What a trained model directory says about itself: model card and training curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hftk.recipe import Recipe
from hftk.tasks import Task


def model_card(recipe: Recipe, task: Task, metrics: dict[str, Any]) -> str:
    """A Hub-style README.md: metadata header, metrics table, how to load it."""
    base = recipe.model if "/" in recipe.model and not recipe.model.startswith((".", "/")) else None
    header = ["---", "library_name: transformers", f"pipeline_tag: {task.pipeline_task}", "tags: [hftk]"]
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
        f"`{recipe.model}` fine-tuned for **{task.pipeline_task}** with hftk (recipe: `recipe.yaml` in this folder).",
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
        *_use(task.pipeline_task, recipe.output_dir),
        "",
        f"or `hftk predict {recipe.output_dir} --input FILE --output predictions.jsonl`.",
        "",
    ]
    return "\n".join(lines)


def _use(pipeline_task: str, output_dir: str) -> list[str]:
    from hftk.models import removed_pipelines

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
