"""hftk: one recipe file and one command from a pretrained checkpoint to a pipeline-ready fine-tuned model."""

from hftk.check import check
from hftk.errors import HftkError
from hftk.models import load_tokenizer, pipeline
from hftk.predict import Predictor, embed, evaluate, predict
from hftk.recipe import Recipe, load_recipe
from hftk.train import train

__version__ = "0.1.0"
__all__ = [
    "HftkError",
    "Predictor",
    "Recipe",
    "check",
    "embed",
    "evaluate",
    "load_recipe",
    "load_tokenizer",
    "pipeline",
    "predict",
    "train",
]
