"""A model exported by `hftk export` (ONNX), run by onnxruntime behind the call of a transformers model.

`model(**batch)` takes the tokenizer's tensors and returns the exported outputs by name (`out.logits`,
`out["start_logits"]`) as torch tensors, so every task's `forward` runs on it unchanged, and `hftk predict`,
`evaluate` and `serve` take an exported folder as they take a trained one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hftk.errors import HftkError

ONNX_FILE = "model.onnx"
MANIFEST = "hftk-export.json"  # format, quantization, outputs, and the agreement measured at export


def is_exported(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST).is_file() and (Path(folder) / ONNX_FILE).is_file()


def manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise HftkError(f"{path}: unreadable ({e}); export the model again (hftk export)") from None


class Outputs(dict):
    """Outputs by key or attribute, as transformers' ModelOutput."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class OnnxModel:
    """An onnxruntime session with the call of a transformers model (see the module docstring)."""

    def __init__(self, folder: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        path = Path(folder) / ONNX_FILE
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own types for damaged files
            raise HftkError(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0]}); export it again") from None
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, **batch: Any) -> Outputs:
        import torch

        feed = {name: batch[name].cpu().numpy() for name in self.inputs if name in batch}
        missing = [name for name in self.inputs if name not in feed]
        if missing:
            raise HftkError(
                f"the exported model needs the inputs {', '.join(missing)}, which the tokenizer did not give"
            )
        values = self.session.run(self.outputs, feed)
        return Outputs({name: torch.from_numpy(v) for name, v in zip(self.outputs, values)})

    def eval(self) -> OnnxModel:
        return self

    def to(self, device: Any) -> OnnxModel:
        return self
