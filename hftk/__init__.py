"""hftk: one recipe file and one command from a pretrained checkpoint to a pipeline-ready fine-tuned model.

`import hftk` stays fast (no transformers Trainer, no torch models): heavy libraries load when a function needs
them, so `hftk check` answers in a second.
"""

from typing import Any

from hftk.config.recipe import Recipe
from hftk.errors import HftkError
from hftk.inference.commands import embed, evaluate, predict
from hftk.inference.predict import Predictor
from hftk.models.loading import load_tokenizer
from hftk.runs.listing import compare_runs, list_runs
from hftk.tasks import load_recipe
from hftk.training.check import check
from hftk.training.train import train

__version__ = "0.1.0"
__all__ = [
    "HftkError",
    "Predictor",
    "Recipe",
    "check",
    "compare_runs",
    "embed",
    "evaluate",
    "list_runs",
    "load_recipe",
    "load_tokenizer",
    "pipeline",
    "predict",
    "train",
]


def pipeline(task: str | None = None, model: str | None = None, **kwargs: Any) -> Any:
    """`transformers.pipeline` with hftk's fast Japanese tokenizer and the pipelines transformers 5 removed
    (question-answering, summarization, translation): see `hftk.inference.pipelines.pipeline`."""
    from hftk.inference import pipelines  # imports transformers' pipelines: only when one is asked for

    return pipelines.pipeline(task, model, **kwargs)
