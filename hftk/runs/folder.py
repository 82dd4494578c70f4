"""One folder, many training runs: what `hftk tune` and `hftk train --folds` share.

The folder's life: refused or resumed, locked for one command, checked again under the lock, cleared for
--overwrite (what the command wrote, all or nothing; a user's own files stay). Each sub-run is an ordinary
`train()` into a sub-folder. A resumed folder must have been trained with the same settings (`trained_with`, the
ledger the command keeps), or its runs would be compared or averaged across settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from hftk.config.reading import dotted
from hftk.config.recipe import Recipe
from hftk.config.training import TRAINING_DEFAULTS
from hftk.data.text import expand_paths
from hftk.errors import HftkError
from hftk.files import LOCK, file_digest, locked
from hftk.training.output import check_output_dir, remove_whole
from hftk.training.train import load_trainable


class RunsFolder(ABC):
    """A folder holding one command's runs and what sums them up."""

    marker: ClassVar[str]  # the file whose presence says the folder holds one
    what: ClassVar[str]  # "a study", "a cross-validation"
    command: ClassVar[str]  # who holds the lock, as `hftk` names it to a second command
    noun: ClassVar[str]  # what --resume continues: "study", "run"
    purpose: ClassVar[str]  # "tune": the end of "there is nothing to tune" for a task that does not train
    serial: ClassVar[str]  # why it refuses torchrun: "hftk tune runs its trials one after another in one process"

    @classmethod
    def begin(
        cls,
        source: Recipe | str | Path | dict[str, Any],
        overrides: dict[str, Any] | None,
        output_dir: Any,
        **flags: bool,
    ) -> Recipe:
        """The checks the command makes before reading data: --resume or --overwrite, one process (its runs go one
        after another), a recipe of a task that trains. `flags`: resume and overwrite."""
        if flags["resume"] and flags["overwrite"]:
            raise HftkError(
                f"--resume continues the {cls.noun} in the output directory, --overwrite replaces it; pick one"
            )
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise HftkError(f"{cls.serial}; start it without torchrun")
        return load_trainable(source, overrides, output_dir, otherwise=f"there is nothing to {cls.purpose}")

    def __init__(self, out: Path) -> None:
        self.out = out

    def found(self) -> bool:
        return (self.out / self.marker).exists()

    def missing(self) -> str:
        """Why a folder without a run to resume has none, for the --resume error."""
        return f"{self.marker} is missing"

    @abstractmethod
    def ours(self) -> Iterable[Path]:
        """What the command writes in the folder: what --overwrite removes."""

    def check(self, *, resume: bool, overwrite: bool) -> None:
        """A folder holding one continues only with --resume, --resume needs one, and any other folder is
        `hftk train`'s rule."""
        found = self.found()
        if found and not (resume or overwrite):
            raise HftkError(
                f"{self.out}: holds {self.what} ({self.marker}); pass --resume to continue it, --overwrite to start "
                "anew, or --output NEW_DIR"
            )
        if resume and not found:
            raise HftkError(
                f"{self.out}: no {self.what.removeprefix('a ')} to resume ({self.missing()}); start without --resume"
            )
        if not found:
            check_output_dir(self.out, resume=False, overwrite=overwrite)

    def clear(self) -> None:
        """Remove what the command writes, all or nothing; a link in its place goes, never what it points to."""
        if self.out.is_dir():
            remove_whole(self.ours())

    @contextlib.contextmanager
    def held(self, *, resume: bool, overwrite: bool) -> Iterator[None]:
        """The folder for this command alone: checked, locked, checked again (what a command before the lock
        wrote), cleared for --overwrite."""
        self.check(resume=resume, overwrite=overwrite)
        with locked(self.out / LOCK, self.command):
            self.check(resume=resume, overwrite=overwrite)
            if overwrite:
                self.clear()
            yield

    def same_settings(
        self, saved: dict[str, Any] | None, now: dict[str, Any], *, mixed: str, allowed: str = ""
    ) -> None:
        """Refuse to resume runs `saved` says were trained with other settings than `now`, naming each change;
        `mixed` says what could not mix them, `allowed` what may change instead."""
        if saved is None:
            raise HftkError(
                f"{self.out}: {self.what.replace('a ', 'the ', 1)} there records no settings to compare (an older "
                "hftk wrote it); start anew with --overwrite, or choose another --output"
            )
        if changes := changed_settings(saved, now):
            shown = ", ".join(changes[:6]) + (f" and {len(changes) - 6} more" if len(changes) > 6 else "")
            raise HftkError(
                f"{self.out}: {self.what.replace('a ', 'the ', 1)} there {mixed.format(shown=shown)}; resume with its "
                f"settings{allowed}, start anew with --overwrite, or choose another --output"
            )


# What a resumed tune or cross-validation may change: it moves the folder, the card's words, how much is logged
# or kept, how data is read; not what is trained, on what data, or how it is scored.
UNMEASURED = (
    "output_dir",
    "card",
    "keep_checkpoints",
    "data.num_proc",
    "data.cache",
    "training.disable_tqdm",
    "tracking",
    "training.report_to",
    "training.run_name",
    "training.project",
    "training.logging_steps",
    "training.logging_strategy",
    "training.dataloader_num_workers",
)


def settings(recipe: Recipe, *, every: bool = False) -> dict[str, Any]:
    """The recipe as dotted keys (`training.learning_rate`), hftk's training defaults filled in; `every` fills in
    transformers' own defaults for the other training arguments too."""
    training = {**(transformers_defaults() if every else {}), **TRAINING_DEFAULTS, **recipe.training}
    return dotted(recipe.model_dump(mode="json") | {"training": training})


@functools.cache
def transformers_defaults() -> dict[str, Any]:
    """TrainingArguments' own default of each field (None where it has none)."""
    from transformers import TrainingArguments

    return {
        f.name: None if f.default is dataclasses.MISSING else f.default for f in dataclasses.fields(TrainingArguments)
    }


def measured(recipe: Recipe, unmeasured: Iterable[str] = ()) -> dict[str, Any]:
    """The settings a run's results depend on: `settings(recipe)` less UNMEASURED and `unmeasured` (a key and
    every key below it), so that runs are compared on what could make their scores differ."""
    skipped = (*UNMEASURED, *unmeasured)
    return {k: v for k, v in settings(recipe).items() if not any(k == s or k.startswith(s + ".") for s in skipped)}


def trained_with(recipe: Recipe, unmeasured: Iterable[str] = ()) -> dict[str, Any]:
    """What a run's results depend on, for --resume to compare: the resolved recipe as dotted keys (hftk's
    training defaults filled in), less UNMEASURED and `unmeasured`; a data file by its content, not its path."""
    record = measured(recipe, unmeasured)
    for split in ("train", "validation", "test"):
        source = getattr(recipe.data, split)
        if f"data.{split}" in record and source is not None and not recipe.data.hub:
            digest = hashlib.blake2b(digest_size=16)
            for path in expand_paths(source):
                digest.update(file_digest(path).encode())
            record[f"data.{split}"] = f"content {digest.hexdigest()}"
    return record


def differing_settings(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Each setting whose value is not the same in every record (dotted keys, as `settings` gives them), with
    each record's value, by key; a training argument a record leaves out has transformers' default, which is
    what that run trained with."""
    defaults = {f"training.{name}": value for name, value in transformers_defaults().items()}
    out: dict[str, list[Any]] = {}
    for key in sorted(set().union(*records)):
        values = [record.get(key, defaults.get(key)) for record in records]
        if any(value != values[0] for value in values[1:]):
            out[key] = values
    return out


def changed_settings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'key old -> new' for each setting that differs between two `trained_with` records."""
    out = []
    for key, (before, after) in differing_settings([old, new]).items():
        if str(before).startswith("content ") and str(after).startswith("content "):
            out.append(f"{key}: other file content")
        else:
            out.append(f"{key} {_setting(before)} -> {_setting(after)}")
    return out


def _setting(value: Any) -> str:
    return "unset" if value is None else f"{value:g}" if isinstance(value, float) else json.dumps(value, default=str)
