"""`hftk export`: a trained folder (or any checkpoint with --task) as an ONNX model for onnxruntime.

The graph comes from `torch.onnx.export` (the dynamo exporter) with dynamic batch and sequence axes, and gives
exactly the outputs the task's `forward` reads (logits; start and end logits; hidden states for embeddings). The
exported folder holds `model.onnx` beside the tokenizer, config, recipe and card, so `hftk predict`, `evaluate`
and `serve` take it as they take the original. `--quantize int8`: dynamic int8 quantization of the weights
per output channel (onnxruntime), a third of the size or less, and faster; where that changes more than 1 % of the
answers, the feed-forward down-projections stay fp32.

Exporting measures what changed: the exported model and the original (fp32, torch) predict the same inputs (the
recipe's validation file, or `--data`), and the share of identical answers (labels, entity spans, answers) is
written into the card and `hftk-export.json`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hftk.errors import HftkError
from hftk.files import CHECKPOINTS, replace_model, scratch, share, sweep
from hftk.inference.exported import MANIFEST, ONNX_FILE
from hftk.inference.predict import Predictor

logger = logging.getLogger("hftk")

_SCRATCH = "hftk-export"  # the work folder beside the output: .hftk-export.<pid>.tmp
_AGREEMENT_INPUTS = 500  # inputs the exported model is checked on
_INT8_AGREEMENT = 0.99  # below it, int8 keeps its down-projections fp32 (when that agrees better)
_SKIPPED = {CHECKPOINTS, "model.safetensors", "pytorch_model.bin", ".hftk-lock", "adapter_model.safetensors"}


def export(
    model: str | Path,
    output: str | Path,
    *,
    fmt: str = "onnx",
    quantize: str | None = None,
    task: str | None = None,
    data: str | Path | None = None,
    overwrite: bool = False,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Write the exported folder; returns its manifest (outputs, precision, agreement with the original).

    `overwrite`: replace the model in a folder that holds one, as `hftk train --overwrite` does (other files stay).
    `trust_remote_code`: run Python code shipped with the model (the caller's word, never the folder's)."""
    if fmt != "onnx":
        raise HftkError(f"--format {fmt}: hftk exports onnx; use --format onnx")
    if quantize not in (None, "int8"):
        raise HftkError(f"--quantize {quantize}: the choice is int8 (dynamic); leave it out for fp32")
    out = Path(output)
    _check_output(out, Path(model), overwrite)
    original = Predictor(model, task=task, precision="fp32", trust_remote_code=trust_remote_code)
    names = original.task.export_outputs()
    if names is None:
        raise HftkError(
            f"{model}: {original.task.pipeline} models generate token by token, which hftk export does not cover; "
            "serve the folder itself (hftk serve)"
        )
    source = Path(original.model_ref)
    parent = out.parent.resolve()
    sweep(parent, re.compile(_SCRATCH), lambda line: logger.warning("hftk: %s", line))
    with scratch(parent, _SCRATCH, _unwritable(parent)) as work:
        started = time.perf_counter()
        folder = work / "model"
        folder.mkdir()
        inputs = _export_graph(original, names, folder / ONNX_FILE)
        _copy_beside(original, source, folder)
        info: dict[str, Any] = {
            "format": "onnx",
            "precision": quantize or "fp32",
            "inputs": inputs,
            "outputs": list(names),
            "task": original.task.name,
            "source": str(model),
        }
        (folder / MANIFEST).write_text(json.dumps(info, indent=2), encoding="utf-8")
        check = _Agreement(original, data)
        # int8 measures each graph it tries and keeps the figure of the one it keeps; fp32 is measured here
        info.update(_quantize(folder, check) if quantize else {"agreement": check(folder)})
        info["seconds"] = round(time.perf_counter() - started, 1)
        (folder / MANIFEST).write_text(json.dumps(info, indent=2), encoding="utf-8")
        _card(folder, info, original.task, out)
        if out.is_dir() and any(out.iterdir()):  # --overwrite (checked above): the model files are swapped
            replace_model(folder, out)
        else:
            share(folder)
            if out.is_dir():
                out.rmdir()
            folder.rename(out)
    return info


def _check_output(out: Path, model: Path, overwrite: bool) -> None:
    """Before any model loads: a folder to write, not the model itself, empty unless told to overwrite."""
    if out.exists() and not out.is_dir():
        raise HftkError(f"{out}: exists and is not a folder; choose another --output")
    if out.is_dir() and model.is_dir() and out.samefile(model):
        raise HftkError(f"{out}: is the model being exported; choose another --output")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise HftkError(f"{out}: not empty; pass --overwrite to replace the model there, or --output NEW_DIR")
    if any(p.exists() and not p.is_dir() for p in out.parents):
        raise HftkError(f"{out}: a parent of the output path is a file, not a folder; choose another --output")


def _unwritable(parent: Path) -> Any:
    return lambda e: HftkError(f"{parent}: cannot write there ({e.strerror or e}); choose another --output")


def _export_graph(predictor: Predictor, names: tuple[str, ...], path: Path) -> list[str]:
    import torch

    model = predictor.model
    # The graph is traced on two inputs of different lengths: padding, and every input the tokenizer gives.
    texts = ["a short one", "and a second input, longer than the first, so that the batch carries padding"]
    encoded = predictor.tokenizer(texts, padding=True, return_tensors="pt")
    inputs = [n for n in predictor.tokenizer.model_input_names if n in encoded]
    tensors = {n: encoded[n] for n in inputs}
    unknown = set(inputs) - {"input_ids", "attention_mask", "token_type_ids"}
    if unknown:
        raise HftkError(
            f"{predictor.model_ref}: the tokenizer gives {', '.join(sorted(unknown))}, which export does not map"
        )

    class Heads(torch.nn.Module):
        """The model with named inputs (the exporter traces them) and the task's outputs as a tuple."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None) -> tuple[Any, ...]:
            given = {"attention_mask": attention_mask, "token_type_ids": token_type_ids}
            out = self.model(input_ids=input_ids, **{k: v for k, v in given.items() if v is not None})
            return tuple(out[n] for n in names)

    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    try:
        with _quiet():
            torch.onnx.export(
                Heads().eval(),
                args=(),
                kwargs=tensors,
                f=str(path),
                dynamo=True,
                input_names=inputs,
                output_names=list(names),
                dynamic_shapes={n: {0: batch, 1: sequence} for n in inputs},
                optimize=True,
                external_data=False,  # one file (ONNX's 2 GB limit: encoders up to large sizes)
                verbose=False,
            )
    except Exception as e:  # the exporter's errors are many and long
        logger.debug("export failed", exc_info=True)
        raise HftkError(f"{predictor.model_ref}: the ONNX exporter failed ({str(e).splitlines()[0]})") from None
    return inputs


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter narrates each step on stdout and warns through logging and `warnings`: hftk prints one line."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _quantize(folder: Path, check: _Agreement) -> dict[str, Any]:
    """Dynamic int8 (weights int8 per output channel, activations quantized on the fly), after onnxruntime's
    recommended pre-processing; returns the MatMuls kept in fp32, the agreement of each graph tried and of the one
    kept.

    Where the int8 graph agrees with the original on fewer than 99 % of the check's inputs, the width-reducing
    MatMuls (the feed-forward down-projections, whose GELU inputs have the widest range, and the heads) stay fp32
    when that agrees better: on SST-2 MiniLM, 98.9 % -> 99.7 % of 1,000 held-out labels, at 0.86x the speed of
    all-int8 (bench/RESULTS.md)."""
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    path = folder / ONNX_FILE
    fp32, prepared = folder / "model-fp32.onnx", folder / "model-prepared.onnx"
    path.rename(fp32)

    def quantize(keep: list[str]) -> None:
        try:
            with _quiet():
                quantize_dynamic(
                    str(prepared), str(path), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=keep
                )
        except Exception as e:  # onnxruntime's tools raise plain exceptions
            raise HftkError(f"int8 quantization failed ({str(e).splitlines()[0]}); export without --quantize") from None

    try:
        with _quiet():
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)  # the exporter's shapes are known
    except Exception as e:
        raise HftkError(f"int8 quantization failed ({str(e).splitlines()[0]}); export without --quantize") from None
    quantize([])
    kept: list[str] = []
    agreement = first = check(folder)
    tried = {"all": first and first["same_answers"]}
    if first is not None and first["same_answers"] < _INT8_AGREEMENT and (narrowing := _narrowing(prepared)):
        all_int8 = path.read_bytes()
        quantize(narrowing)
        second = check(folder)
        tried["down-projections fp32"] = second and second["same_answers"]
        if second is not None and second["same_answers"] > first["same_answers"]:
            kept, agreement = narrowing, second
        else:
            path.write_bytes(all_int8)
    fp32.unlink()
    prepared.unlink()
    return {"kept_fp32": kept, "agreement_tried": tried, "agreement": agreement}


def _narrowing(graph: Path) -> list[str]:
    """The MatMuls whose constant weight maps more inputs to fewer outputs (down-projections, heads)."""
    import onnx

    model = onnx.load(str(graph))
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "MatMul" and len(shape := shapes.get(n.input[1], ())) == 2 and shape[0] > shape[1]
    ]


def _copy_beside(predictor: Predictor, source: Path, work: Path) -> None:
    """Tokenizer, config, recipe and card: what predicting from the folder reads, without the weights."""
    if source.is_dir():
        for item in source.iterdir():
            if item.name in _SKIPPED or item.suffix in (".safetensors", ".bin", ".onnx"):
                continue
            if item.is_file():
                shutil.copy2(item, work / item.name)
    else:  # a hub id: what the loaded tokenizer and config say
        predictor.tokenizer.save_pretrained(work)
        predictor.model.config.save_pretrained(work)
    if not (work / "recipe.yaml").exists():  # any checkpoint with --task: a recipe that names its task
        import yaml

        recipe = predictor.recipe.model_dump(mode="json", exclude_defaults=True)
        (work / "recipe.yaml").write_text(yaml.safe_dump({**recipe, "task": predictor.task.name}), encoding="utf-8")


class _Agreement:
    """Share of inputs whose answers from an exported folder equal the original's (scores aside), on the recipe's
    validation file or `data`; None without either. The original predicts once."""

    def __init__(self, original: Predictor, data: str | Path | None) -> None:
        self.original = original
        self.path = data or original.recipe.data.validation
        self.expected: list[Any] | None = None
        if not self.path or not Path(self.path).exists():
            logger.warning("hftk: no data to check the export on (no validation file); give --data FILE")
            return
        records = original.read(self.path)
        self.records = records.subset(range(min(len(records), _AGREEMENT_INPUTS)))
        self.expected = [answer_of(x) for x in original.predict(self.records)]

    def __call__(self, folder: Path) -> dict[str, Any] | None:
        if self.expected is None:
            return None
        exported = Predictor(folder, trust_remote_code=self.original.trust_remote_code)
        exported.max_batch_size = self.original.max_batch_size
        same = sum(x == answer_of(y) for x, y in zip(self.expected, exported.predict(self.records)))
        return {"data": str(self.path), "inputs": len(self.expected), "same_answers": same / len(self.expected)}


def answer_of(prediction: Any) -> Any:
    """A prediction without its scores and vectors: what a user reads as the answer."""
    if isinstance(prediction, dict):
        return {k: answer_of(v) for k, v in prediction.items() if k not in ("score", "scores", "embedding")}
    if isinstance(prediction, list):
        return [answer_of(v) for v in prediction]
    return prediction


def _card(folder: Path, info: dict[str, Any], task: Any, out: Path) -> None:
    """The original's card with its "Use" section replaced by the call that runs the export where it will be
    (`out`), and a section on the export: format, outputs, agreement with the original."""
    card = folder / "README.md"
    agreement = info.get("agreement")
    measured = (
        f"On {agreement['inputs']} inputs of `{Path(agreement['data']).name}`, {agreement['same_answers']:.2%} of its "
        "answers are the original model's (scores aside)."
        if agreement
        else "Agreement with the original was not measured (no data given)."
    )
    kept = info.get("kept_fp32")
    precision = f"{info['precision']}, {len(kept)} down-projection MatMuls kept fp32" if kept else info["precision"]
    section = (
        f"\n## Exported (hftk export)\n\nONNX ({precision}), run by onnxruntime: `hftk predict`, `hftk serve` "
        f"take this folder as they take the original. Outputs: {', '.join(info['outputs'])}. {measured}\n"
    )
    text = card.read_text(encoding="utf-8") if card.exists() else f"# {info['task']} (exported)\n"
    head, _, rest = text.partition("\n## Use\n")
    _, later, after = rest.partition("\n## ")  # the section after Use, if the card has one
    use = "\n".join(["", "## Use", "", *task.use_lines(out, exported=True), ""])
    text = head.rstrip("\n") + "\n" + use + (f"\n## {after}" if later else "")
    card.write_text(text.rstrip("\n") + "\n" + section, encoding="utf-8")
