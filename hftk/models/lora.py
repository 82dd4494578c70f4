"""LoRA and the other PEFT methods as a recipe option, for every task.

    peft: {method: lora, r: 8, alpha: 16, dropout: 0.1, target_modules: [query, value], merge: true}

Only the adapter and the task's new head train (peft's task types keep the head trainable). The output directory
keeps the adapter in `adapter/` and, with `merge: true` (the default), the merged full model at its top, so
`pipeline(task, model=DIR)` loads it like any other; with `merge: false` the top holds only the config and hftk
predict rebuilds the model from the base checkpoint and the adapter.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from hftk.errors import did_you_mean
from hftk.models.loading import resolve_model

ADAPTER_DIR = "adapter"
# Short names the issue-tracker and most tutorials use, for LoRA's own field names.
_ALIASES = {"alpha": "lora_alpha", "dropout": "lora_dropout"}
# Fields hftk sets itself.
_OWNED = {"task_type", "peft_type", "base_model_name_or_path", "inference_mode", "revision", "auto_mapping"}


class PeftSettings(BaseModel):
    """`peft:` in a recipe: the method, whether to merge, and that method's own options (checked against peft)."""

    model_config = ConfigDict(extra="allow")

    method: str = "lora"
    merge: bool = True

    def options(self) -> dict[str, Any]:
        extra = dict(self.model_extra or {})
        if self.method == "lora":
            extra = {_ALIASES.get(k, k): v for k, v in extra.items()}
        return extra


def config_class(method: str) -> type:
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    by_name = {str(k.value).lower(): v for k, v in PEFT_TYPE_TO_CONFIG_MAPPING.items()}
    if method.lower() not in by_name:
        raise ValueError(method)
    return by_name[method.lower()]


def methods() -> list[str]:
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    return sorted(str(k.value).lower() for k in PEFT_TYPE_TO_CONFIG_MAPPING)


def problems(settings: dict[str, Any]) -> list[tuple[str, str]]:
    """(dotted key, message) for each problem in a recipe's `peft:` block; peft itself decides what is valid."""
    try:
        parsed = PeftSettings.model_validate(settings)
    except Exception as e:  # pydantic says which field; the recipe loader reports it with its line
        return [("peft", str(e).splitlines()[-1].strip())]
    try:
        cls = config_class(parsed.method)
    except ValueError:
        hint = did_you_mean(parsed.method, methods())
        return [("peft.method", f"{parsed.method!r} is not a peft method{hint}; e.g. lora, ia3, loha, lokr")]
    fields = {f.name for f in dataclasses.fields(cls) if f.init} - _OWNED
    out = []
    for key in parsed.options():
        if key not in fields:
            hint = did_you_mean(key, sorted(fields))
            out.append((f"peft.{key}", f"not a {cls.__name__} field{hint}; see the peft docs"))
    if out:
        return out
    try:
        cls(**parsed.options())
    except (TypeError, ValueError) as e:
        return [("peft", str(e).strip().splitlines()[0])]
    return []


def wrap(model: Any, settings: PeftSettings, task_type: str | None) -> Any:
    """The model with the adapter attached; only the adapter (and the task's head, which peft's `task_type` keeps
    trainable) trains. `task_type` None: peft's plain PeftModel."""
    from peft import get_peft_model

    config = config_class(settings.method)(task_type=task_type, **settings.options())
    return get_peft_model(model, config)


def trainable_share(model: Any) -> dict[str, float]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_parameters": trainable, "total_parameters": total, "trainable_share": trainable / total}


def save(model: Any, out: Path, *, merge: bool) -> None:
    """The adapter into out/adapter/ and, merged, the full model (or its config alone) into out/."""
    model.save_pretrained(out / ADAPTER_DIR, safe_serialization=True)
    base = model.merge_and_unload() if merge else model.get_base_model()
    if merge:
        base.save_pretrained(out, safe_serialization=True)
    else:
        base.config.save_pretrained(out)


def load(auto_model: Any, model_dir: Path, base_ref: str, **kwargs: Any) -> Any:
    """An unmerged hftk output: the base checkpoint with the saved config (labels, head size), plus the adapter."""
    from peft import PeftModel
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    base = auto_model.from_pretrained(resolve_model(base_ref), config=config, **kwargs)
    return PeftModel.from_pretrained(base, model_dir / ADAPTER_DIR).merge_and_unload()


def is_unmerged(model_dir: Path) -> bool:
    return (model_dir / ADAPTER_DIR / "adapter_config.json").is_file() and not any(
        (model_dir / n).exists() for n in ("model.safetensors", "model.safetensors.index.json")
    )
