"""hftk's real entry points with the network cut off, on a checkpoint that ships Python code.

Run by tests/test_security.py in its own process (`python tests/security_probe.py WORKDIR [hub]`), with the
HF offline switches unset so that nothing but hftk itself keeps it off the network. Every socket connection
and DNS lookup is recorded and refused. Writes WORKDIR/report.json.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
from pathlib import Path

attempts: list[str] = []


def _refuse(what):
    def refuse(*args, **kwargs):
        attempts.append(f"{what}{args[1:2] if what == 'connect' else args[:1]}")
        raise OSError("network access refused by tests/security_probe.py")

    return refuse


_connect = socket.socket.connect


def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        return _refuse("connect")(self, address)
    return _connect(self, address)


socket.socket.connect = connect
socket.getaddrinfo = _refuse("getaddrinfo")
socket.create_connection = _refuse("create_connection")

work = Path(sys.argv[1])
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings: list[str] = []


class Collect(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        warnings.append(record.getMessage())


logging.getLogger("hftk").addHandler(Collect(logging.WARNING))

import hftk  # noqa: E402
from hftk.cli import main  # noqa: E402

report: dict = {}
custom = work / "custom"  # a checkpoint whose config and tokenizer name classes in custom.py
recipe = work / "recipe.yaml"

if sys.argv[2:] == ["hub"]:
    # A hub id is the one thing that goes to the network: the attempt is made, refused, and reported in one
    # line (hftk probes the Hub once and stops; huggingface_hub's own retries took about a minute).
    report["hub_exit"] = main(["train", str(work / "hub.yaml")])
    report["hub_attempts"] = len(attempts)
    (work / "report.json").write_text(json.dumps(report, indent=1))
    sys.exit(0)

hftk.check(recipe)
result = hftk.train(recipe, output_dir=work / "run")
predictor = hftk.Predictor(result.output_dir)
report["without_trust"] = {
    "trained": type(predictor.model).__name__,
    "tokenizer": type(predictor.tokenizer).__name__,
    "predict": hftk.Predictor(custom).predict(["a fine film"])[0]["label"],
    "predict_model": type(hftk.Predictor(custom).model).__name__,
    "pipeline": type(hftk.pipeline("text-classification", model=str(custom)).model).__name__,
    "evaluate": sorted(hftk.evaluate(result.output_dir, work / "dev.tsv")),
    "attempts": list(attempts),
    "code_ran": (work / "custom_code_ran").exists(),
}

# The folder asks for trust in every file it ships (its recipe.yaml above all, which `hftk push` uploads): none
# of them is the word of the person running hftk, so its code stays unused by every command and the Python API.
(custom / "recipe.yaml").write_text(
    (custom / "recipe.yaml").read_text().replace("trust_remote_code: false", "trust_remote_code: true")
)
for name in ("config.json", "tokenizer_config.json"):
    (custom / name).write_text(json.dumps({**json.loads((custom / name).read_text()), "trust_remote_code": True}))
(work / "inputs.txt").write_text("a fine film\nthe plot was dull\n")
asked = work / "asked"
report["folder_asks"] = {
    "predictor": type(hftk.Predictor(custom).model).__name__,
    "pipeline": type(hftk.pipeline("text-classification", model=str(custom)).model).__name__,
    "exits": {
        "predict": main(
            ["predict", str(custom), "--input", str(work / "inputs.txt"), "--output", str(asked / "p.jsonl")]
        ),
        "evaluate": main(["evaluate", str(custom), "--data", str(work / "dev.tsv")]),
        "embed": main(["embed", str(custom), "--input", str(work / "inputs.txt"), "--output", str(asked / "e.npy")]),
        "export": main(["export", str(custom), "--output", str(asked / "onnx"), "--data", str(work / "dev.tsv")]),
    },
    "code_ran": (work / "custom_code_ran").exists(),
    "warnings": [w for w in warnings if "trust_remote_code" in w],
}
warnings.clear()

# The person's word: the flag, then the Python argument.
flag = main(
    [
        "predict",
        str(custom),
        "--input",
        str(work / "inputs.txt"),
        "--output",
        str(work / "trusted.jsonl"),
        "--trust-remote-code",
    ]
)
trusting = hftk.Predictor(custom, trust_remote_code=True)
report["with_trust"] = {
    "flag_exit": flag,
    "model": type(trusting.model).__name__,
    "tokenizer": type(trusting.tokenizer).__name__,
    "code_ran": (work / "custom_code_ran").exists(),
    "warnings": [w for w in warnings if "trust_remote_code" in w],
    "attempts": list(attempts),
}
(work / "report.json").write_text(json.dumps(report, indent=1))
