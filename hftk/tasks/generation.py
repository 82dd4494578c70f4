"""Generation settings of a recipe (`generation:`), shared by causal-lm and seq2seq.

They are written into the trained model's `generation_config.json`, so `hftk predict`, evaluation during training
and `transformers` (`model.generate`, `pipeline`) all decode the same way without being told.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from hftk.config.recipe import Strict
from hftk.features.instructions import template_problem

_SAMPLING = ("temperature", "top_p", "top_k")


class GenerationSettings(Strict):
    """Decoding: greedy by default (deterministic), beam search with num_beams > 1, sampling with do_sample."""

    max_new_tokens: int = Field(default=50, gt=0)
    min_new_tokens: int | None = Field(default=None, ge=0)  # no end-of-sequence before this many tokens
    do_sample: bool = False
    num_beams: int = Field(default=1, ge=1)
    temperature: float | None = Field(default=None, gt=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    repetition_penalty: float | None = Field(default=None, gt=0)
    no_repeat_ngram_size: int | None = Field(default=None, ge=0)
    length_penalty: float | None = None

    @model_validator(mode="after")
    def _sampling_needs_do_sample(self) -> GenerationSettings:
        given = [k for k in _SAMPLING if getattr(self, k) is not None]
        if given and not self.do_sample:
            raise ValueError(f"{', '.join(given)} only apply when sampling; add do_sample: true or remove them")
        return self

    def apply(self, model: Any) -> None:
        """Write the settings into `model.generation_config` (saved with the model)."""
        config = model.generation_config
        values = {k: v for k, v in self.model_dump().items() if v is not None}
        if not self.do_sample:  # the base checkpoint's sampling values would make the config inconsistent
            values |= dict.fromkeys(_SAMPLING)
        values["max_length"] = None  # max_new_tokens says it; a default max_length beside it only warns
        config.update(**values)
        if config.pad_token_id is None:  # GPT-2 has no pad token: batched generation pads with eos
            pad = model.config.pad_token_id
            if pad is None:
                eos = config.eos_token_id if config.eos_token_id is not None else model.config.eos_token_id
                pad = eos[0] if isinstance(eos, list) else eos
            config.pad_token_id = pad


def seed_sampling(settings: GenerationSettings, seed: int) -> None:
    """With do_sample, seed torch before a predict call, so the same inputs give the same samples."""
    if settings.do_sample:
        from transformers import set_seed

        set_seed(seed)


def _template_builds_prompts(template: str | None) -> str | None:
    if template is not None and (problem := template_problem(template)) is not None:
        raise ValueError(problem)
    return template


# A recipe's prompt_template (causal-lm and seq2seq: one recipe shape for both families), checked when the recipe
# is read: the roles prompt, context and system only, and {prompt} in it.
PromptTemplate = Annotated[str | None, AfterValidator(_template_builds_prompts)]


class Generates:
    """What the generating tasks (causal LM, seq2seq) share: the recipe's generation settings, and instruction data
    (`data.shape` other than text), whose roles come with its shape and are checked once the recipe reads."""

    recipe: Any

    def generation_settings(self) -> GenerationSettings:
        return self.recipe.generation

    @classmethod
    def recipe_column_problems(cls, data: Any) -> list[str]:
        if isinstance(data, dict) and data.get("shape", "text") != "text":
            return []
        return super().recipe_column_problems(data)  # type: ignore[misc]
