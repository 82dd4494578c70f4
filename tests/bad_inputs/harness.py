"""Bad-input cases: discovery, the folder each case runs in, and the runner that calls the real CLI.

Each case is one file under tests/bad_inputs/ (any depth): YAML, or Python with a `CASE` dict and an optional
`setup(folder)` for inputs YAML cannot describe. See README.md in this folder for the keys.

`python -m tests.bad_inputs.harness RESULTS.json WORKDIR CASE_FILE...` runs the cases in one process, each
through `hftk.cli.main` (what `python -m hftk` runs) with file descriptors 1 and 2 captured, so importing
torch and transformers is paid once for the whole suite. Cases with `isolated: true` get their own
`python -m hftk` process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import string
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..helpers import MINILM, ROOT

HERE = Path(__file__).resolve().parent

# The folder every case starts from: real SST-2 rows and a recipe that passes `hftk check` as it is.
BASE_FILES = {
    "train.tsv": {"head": "data/en/sst2/train.tsv", "rows": 40},
    "dev.tsv": {"head": "data/en/sst2/dev.tsv", "rows": 20},
}
BASE_RECIPE: dict[str, Any] = {
    "task": "text-classification",
    "model": MINILM,
    "data": {"train": "train.tsv", "validation": "dev.tsv", "columns": {"text": "sentence"}},
    "labels": {0: "negative", 1: "positive"},
    "max_length": 64,
    "training": {"num_train_epochs": 1, "per_device_train_batch_size": 8},
    "output_dir": "out",
}
KEYS = {"run", "recipe", "files", "expect", "exit", "lines", "isolated", "stdout", "env"}


@dataclass
class Case:
    """One bad input: the command line, the folder it runs in, and what must come out."""

    id: str
    path: Path
    run: list[str]
    expect: list[str]
    exit: int = 2
    lines: int = 1  # `hftk: error:` lines expected (a recipe with several problems reports each)
    stdout: list[str] = field(default_factory=list)
    recipe: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)
    isolated: bool = False
    env: dict[str, str] = field(default_factory=dict)  # environment variables set for the command


def discover(root: Path = HERE) -> list[Case]:
    """Every case file below `root`, recursively, sorted by path."""
    paths = sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml", ".py") and _is_case(p))
    return [load_case(p, root) for p in paths]


def _is_case(path: Path) -> bool:
    return path.name not in ("harness.py", "__init__.py") and "__pycache__" not in path.parts


def load_case(path: Path, root: Path = HERE) -> Case:
    """Read and check one case file; an unknown key is an error, so a typo cannot silently weaken a case."""
    raw = dict(_module(path).CASE) if path.suffix == ".py" else yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a case is a mapping")
    if unknown := set(raw) - KEYS:
        raise ValueError(f"{path}: unknown case keys {sorted(unknown)}; allowed: {sorted(KEYS)}")
    for key in ("run", "expect"):
        if key not in raw:
            raise ValueError(f"{path}: `{key}:` is required")
    run = raw["run"]
    as_list = lambda v: [v] if isinstance(v, str) else list(v or [])  # noqa: E731
    return Case(
        id=str(path.relative_to(root).with_suffix("")).replace(os.sep, "/"),
        path=path,
        run=shlex.split(run) if isinstance(run, str) else [str(a) for a in run],
        expect=as_list(raw["expect"]),
        exit=int(raw.get("exit", 2)),
        lines=int(raw.get("lines", 1 if raw.get("exit", 2) == 2 else 0)),
        stdout=as_list(raw.get("stdout")),
        recipe=raw.get("recipe") or {},
        files=raw.get("files") or {},
        isolated=bool(raw.get("isolated", False)),
        env={str(k): str(v) for k, v in (raw.get("env") or {}).items()},
    )


def _module(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"bad_input_case_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


# ------------------------------------------------------------------------------------------- the folder


def materialise(case: Case, folder: Path) -> None:
    """Write the case's folder: base data and recipe, its own files on top, then its setup()."""
    folder.mkdir(parents=True)
    subst = _substitutions(folder)
    recipe = _merge(BASE_RECIPE, _substitute(case.recipe, subst))
    files: dict[str, Any] = {**BASE_FILES, "recipe.yaml": yaml.safe_dump(recipe, sort_keys=False)}
    files.update(_substitute(case.files, subst))
    for name, spec in files.items():
        _write(folder / name, spec)
    if case.path.suffix == ".py":
        setup = getattr(_module(case.path), "setup", None)
        if setup is not None:
            setup(folder)


def _substitutions(folder: Path) -> dict[str, str]:
    from hftk.models.loading import resolve_model

    return {"ROOT": str(ROOT), "CASE": str(folder), "MINILM": resolve_model(MINILM)}


def _substitute(value: Any, subst: dict[str, str]) -> Any:
    if isinstance(value, str):
        return string.Template(value).safe_substitute(subst)
    if isinstance(value, dict):
        return {k: _substitute(v, subst) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, subst) for v in value]
    return value


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`patch` over `base`, dicts merged key by key; a value `~delete` removes the key."""
    out = dict(base)
    for key, value in patch.items():
        if value == "~delete":
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _write(path: Path, spec: Any) -> None:
    if spec is None:  # remove a base file
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(spec, str):
        path.write_bytes(spec.encode("utf-8"))
        return
    if not isinstance(spec, dict):
        raise ValueError(f"{path.name}: a file is text or a mapping (text/encoding, head/rows, copy, json, dir)")
    if "text" in spec:
        path.write_bytes(spec["text"].encode(spec.get("encoding", "utf-8")))
    elif "head" in spec:
        lines = (ROOT / spec["head"]).read_text(encoding="utf-8").splitlines(keepends=True)
        path.write_text("".join(lines[: spec["rows"] + 1]), encoding="utf-8")
    elif "json" in spec:
        path.write_text(json.dumps(spec["json"]), encoding="utf-8")
    elif spec.get("dir"):
        path.mkdir()
    elif "copy" in spec:
        src = Path(spec["copy"])
        src = src if src.is_absolute() else ROOT / src
        if src.is_dir():  # large weights are linked, small files copied so a case may edit them
            path.mkdir()
            for item in src.iterdir():
                if item.name in spec.get("except", []) or item.is_dir():
                    continue
                if item.stat().st_size > 1_000_000:
                    (path / item.name).symlink_to(item)
                else:
                    shutil.copy2(item, path / item.name)
        else:
            shutil.copy2(src, path)
        if "config" in spec:  # fields set in the copied model's config.json, e.g. the head a trained model has
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
            (path / "config.json").write_text(json.dumps(config | spec["config"]), encoding="utf-8")
    else:
        raise ValueError(f"{path.name}: unknown file spec {sorted(spec)}")


def set_writable(path: Path, writable: bool) -> None:
    """Make a folder unwritable, even for root (immutable with chattr, which root cannot write past), or undo it."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i" if writable else "+i", str(path)], check=True, capture_output=True)
    else:
        path.chmod(0o755 if writable else 0o555)


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry below `folder` and a digest of its content (links by target, not followed)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            out[rel] = f"link:{os.readlink(path)}"
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


# ------------------------------------------------------------------------------------------- the runner


def run_case(case: Case, folder: Path) -> dict[str, Any]:
    """Run one case in `folder`; exit status, stdout, stderr and what changed in the folder."""
    before = snapshot(folder)
    subst = _substitutions(folder)
    case = dataclasses.replace(case, run=_substitute(case.run, subst), env=_substitute(case.env, subst))
    if case.isolated:
        env = {**os.environ, "PYTHONPATH": str(ROOT), **case.env}
        proc = subprocess.run(
            [sys.executable, "-m", "hftk", *case.run], cwd=folder, env=env, capture_output=True, text=True
        )
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    else:
        saved = {k: os.environ.get(k) for k in case.env}
        os.environ.update(case.env)
        try:
            code, out, err = _in_process(case.run, folder)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    after = snapshot(folder)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return {"exit": code, "stdout": out, "stderr": err, "changed": changed}


def _in_process(argv: list[str], folder: Path) -> tuple[int, str, str]:
    """`hftk.cli.main(argv)` in `folder`, with fds 1 and 2 sent to files (library output included)."""
    from hftk.cli import main

    cwd = os.getcwd()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fout.fileno(), 1)
        os.dup2(ferr.fileno(), 2)
        try:
            os.chdir(folder)
            code = main(argv)
        except SystemExit as e:  # argparse
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:  # what the interpreter would print, and its exit status
            traceback.print_exc()
            code = 1
        finally:
            os.chdir(cwd)
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        fout.seek(0)
        ferr.seek(0)
        return code, fout.read().decode("utf-8", "replace"), ferr.read().decode("utf-8", "replace")


def main(argv: list[str]) -> None:
    results_file, workdir, *case_files = argv
    sys.path.insert(0, str(ROOT))
    results = {}
    for file in case_files:
        case = load_case(Path(file))
        folder = Path(workdir) / case.id.replace("/", "__")
        try:
            materialise(case, folder)
            try:
                results[case.id] = run_case(case, folder)
            finally:
                if case.path.suffix == ".py" and (teardown := getattr(_module(case.path), "teardown", None)):
                    teardown(folder)
        except Exception:
            results[case.id] = {"exit": None, "stdout": "", "stderr": traceback.format_exc(), "changed": []}
    Path(results_file).write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
