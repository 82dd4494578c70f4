"""`hftk predict`, `hftk evaluate`, `hftk embed`: a file of inputs in, a file of predictions (or embeddings, or
metrics) out, through one batched `Predictor`. The output file is checked before any model loads, locked for one
command, and written whole or not at all."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hftk.data.records import MissingColumn, Records
from hftk.errors import HftkError
from hftk.files import atomic_write_text, locked
from hftk.inference.predict import Predictor, check_options
from hftk.report import check_report_folder


def predict(
    model_dir: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    *,
    task: str | None = None,
    recipe_overrides: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
    **options: Any,
) -> int:
    """Predict every input of a file and write JSONL in input order; returns the number of rows written.

    Args:
        model_dir: an hftk output directory, or any checkpoint with `task`.
        task: the pipeline task, for checkpoints not trained by hftk.
        recipe_overrides: recipe fields by dotted key (input columns, generation settings, ...).
        trust_remote_code: run Python code shipped with the model (never on the word of a file in it).
        options: the task's prediction options (top_k, aggregation_strategy, ...).
    """
    out = _output_file(output_path, input_path, "predictions.jsonl")
    check_options(None, options)  # before any model loads
    with locked(_lock_of(out), "hftk predict", out):  # two predictions into one file: the second stops at once
        predictor = Predictor(model_dir, task=task, **_loading(recipe_overrides, trust_remote_code))
        with _column_fix(lambda role: f"name the input column with --set data.columns.{role}=COLUMN"):
            records = predictor.read(input_path)
            results = predictor.predict(records, **options)
        where, places = _places(records)
        lines = (
            json.dumps({where: place, **_inputs_of(row, predictor), **result}, ensure_ascii=False)
            for place, row, result in zip(places, records.rows, results)
        )
        try:
            atomic_write_text(out, "".join(line + "\n" for line in lines))  # never half a predictions file
        except OSError as e:
            raise HftkError(f"{out}: cannot write ({e.strerror or e}); choose a writable path") from None
    return len(results)


def _loading(recipe_overrides: dict[str, Any] | None, trust_remote_code: bool) -> dict[str, Any]:
    """Predictor's keywords: recipe fields, and trust as the flag or `--set trust_remote_code=true` gives it."""
    return {"trust_remote_code": trust_remote_code, **(recipe_overrides or {})}


@contextlib.contextmanager
def _column_fix(fix: Callable[[str | None], str]) -> Iterator[None]:
    """A missing input column, with the command's own way to name it (not the model's recipe)."""
    try:
        yield
    except MissingColumn as e:
        raise HftkError(e.with_fix(fix(e.role))) from None


def _lock_of(out: Path) -> Path:
    return out.with_name(f".{out.name}.hftk-lock")


def _output_file(output_path: str | Path, input_path: str | Path, example: str) -> Path:
    """The output file, checked before any model loads: not the input (its gold labels would be lost), not a
    folder, and under a path that can be a folder."""
    out = Path(output_path)
    source = Path(input_path)
    same = out.resolve() == source.resolve() or (out.exists() and source.exists() and out.samefile(source))
    if same:
        raise HftkError(f"{out}: is the input file; write the output to another file (--output)")
    if out.is_dir():
        raise HftkError(f"{out}: is a directory; give a file name such as {example}")
    if any(p.exists() and not p.is_dir() for p in out.parents):
        raise HftkError(f"{out}: a parent of the output path is a file, not a folder; choose another path")
    return out


def _places(records: Records) -> tuple[str, list[int]]:
    """Where each input was: ("line", its line) in a text file (CSV, TSV, JSON Lines, .txt), else ("record", N)."""
    if records.lines is not None:
        return "line", list(records.lines)
    return "record", list(range(1, len(records) + 1))


def _inputs_of(row: dict[str, Any], predictor: Predictor) -> dict[str, Any]:
    cols = [predictor.recipe.data.column(r) for r in (*predictor.task.input_roles, *predictor.task.optional_roles)]
    return {c: row[c] for c in cols if c in row}


def evaluate(
    model_dir: str | Path,
    data_path: str | Path,
    *,
    task: str | None = None,
    recipe_overrides: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
    report: str | Path | None = None,
) -> dict[str, float]:
    """The task's metrics on a labelled file, computed from the same batched predictor.

    Args:
        report: a folder for the evaluation report (report.html, report.json, figures/): new, empty, or holding
            an earlier report, which is replaced.
    """
    folder = Path(report) if report is not None else None
    guard: Any = contextlib.nullcontext()
    if folder is not None:
        check_report_folder(folder)  # before any model loads
        guard = locked(folder.with_name(f".{folder.name}.hftk-lock"), "hftk evaluate", folder)
    with guard:
        predictor = Predictor(model_dir, task=task, **_loading(recipe_overrides, trust_remote_code))
        return predictor.evaluate(predictor.task.read(data_path).whole(), report=folder)


def embed(
    model: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    *,
    pooling: str | None = None,
    normalize: bool | None = None,
    column: str | None = None,
    precision: str | None = None,
    trust_remote_code: bool = False,
) -> int:
    """Sentence embeddings of every input, written as .npy (float32, row i = input i: line i + 1 of a text file)
    or .parquet (each input's line or record number, the input and its vector).

    Returns the number of inputs embedded.
    """
    out = _output_file(output_path, input_path, "embeddings.npy")
    suffix = out.suffix.lower()
    if suffix not in (".npy", ".parquet"):
        raise HftkError(f"{out}: embeddings are written as .npy or .parquet; change the file name")
    options = {"pooling": pooling, "normalize": normalize, "data.columns.text": column, "precision": precision}
    options["trust_remote_code"] = trust_remote_code
    with locked(_lock_of(out), "hftk embed", out):
        predictor = Predictor(model, task="feature-extraction", **{k: v for k, v in options.items() if v is not None})
        with _column_fix(lambda role: "name the input column with --column COLUMN"):
            records = predictor.read(input_path)
            features = predictor.task.encode(records, with_targets=False)
        vectors = predictor.task.vectors(features, predictor.run(features))
        tmp = out.with_name(f".{out.stem}.tmp{suffix}")
        try:
            if suffix == ".npy":
                np.save(tmp, vectors)
            else:
                import pyarrow as pa
                import pyarrow.parquet as pq

                text = predictor.recipe.data.column("text")
                column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
                where, places = _places(records)
                table = pa.table({where: places, text: [r[text] for r in records.rows], "embedding": column})
                pq.write_table(table, tmp)
            os.replace(tmp, out)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise HftkError(f"{out}: cannot write ({e.strerror or e}); choose a writable path") from None
    return len(vectors)
