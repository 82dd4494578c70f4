"""Security: safe YAML only, no pickles saved or loaded, remote code only on the word of the person running hftk
(the recipe they train, --trust-remote-code, trust_remote_code=True; never a file in the model folder), no
network unless the recipe names a hub id."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hftk import HftkError, load_recipe
from hftk.config.yaml import YamlLoader
from hftk.models.loading import resolve_model

from .helpers import DATA, MINILM, ROOT, head, sst2_recipe

CUSTOM_CODE = """
import os
from pathlib import Path

Path(os.environ["HFTK_CODE_RAN"]).write_text("custom.py was imported")
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast


class CustomConfig(BertConfig):
    pass


class CustomModel(BertForSequenceClassification):
    config_class = CustomConfig


class CustomTokenizerFast(BertTokenizerFast):
    pass
"""


def test_recipes_are_read_with_a_safe_loader(tmp_path):
    assert issubclass(YamlLoader, yaml.SafeLoader)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(HftkError, match="invalid YAML"):
        load_recipe(recipe)
    assert not (Path.cwd() / "pwned").exists()


def test_no_unsafe_loading_anywhere_in_hftk():
    """No yaml.load with a full loader, no pickle, no torch.load without weights_only, no remote code by default."""
    unsafe = re.compile(
        r"yaml\.(load|unsafe_load|full_load)\(|Loader=yaml\.(Loader|FullLoader|UnsafeLoader)|pickle\.loads?\("
        r"|torch\.load\((?![^)]*weights_only=True)|trust_remote_code=True|use_safetensors=False"
    )
    found = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in sorted((ROOT / "hftk").rglob("*.py"))
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if unsafe.search(line)
    ]
    assert found == []


def test_pickled_weights_are_refused(tmp_path):
    from hftk.models.loading import check_weights

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(HftkError, match=r"pytorch_model.bin \(a pickle"):
        check_weights(str(tmp_path))


@pytest.fixture
def custom_checkpoint(tmp_path) -> Path:
    """MiniLM plus custom.py, named by config.json and tokenizer_config.json (`auto_map`), as a hub repo with
    code does it. Importing custom.py leaves a file behind."""
    src, dst = Path(resolve_model(MINILM)), tmp_path / "custom"
    dst.mkdir()
    for item in src.iterdir():
        if item.is_file():
            (dst / item.name).symlink_to(item) if item.stat().st_size > 1_000_000 else (dst / item.name).write_bytes(
                item.read_bytes()
            )
    (dst / "custom.py").write_text(CUSTOM_CODE)
    config = json.loads((dst / "config.json").read_text())
    # A classifier, as its recipe.yaml says, with its own class too (what a load with its code registers).
    config["architectures"] = ["BertForSequenceClassification", "CustomModel"]
    config["auto_map"] = {
        "AutoConfig": "custom.CustomConfig",
        "AutoModelForSequenceClassification": "custom.CustomModel",
    }
    (dst / "config.json").write_text(json.dumps(config))
    tok = json.loads((dst / "tokenizer_config.json").read_text())
    tok["auto_map"] = {"AutoTokenizer": [None, "custom.CustomTokenizerFast"]}
    (dst / "tokenizer_config.json").write_text(json.dumps(tok))
    return dst


def _probe(work: Path, *args: str) -> tuple[dict, subprocess.CompletedProcess]:
    """tests/security_probe.py in its own process, the HF offline switches unset: hftk alone keeps it offline."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    env |= {
        "HF_HOME": str(work / "hf_home"),  # an empty cache: nothing to fall back on
        "HF_MODULES_CACHE": str(work / "modules"),
        "HFTK_CODE_RAN": str(work / "custom_code_ran"),
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, str(ROOT / "tests/security_probe.py"), str(work), *args]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((work / "report.json").read_text())
    print(json.dumps(report, indent=1))
    return report, proc


@pytest.fixture
def recipes(custom_checkpoint, tmp_path) -> Path:
    rows = {
        "train": head(DATA / "en/sst2/train.tsv", tmp_path / "train.tsv", 16),
        "validation": head(DATA / "en/sst2/dev.tsv", tmp_path / "dev.tsv", 16),
    }
    training = {"max_steps": 1, "eval_strategy": "no", "save_strategy": "no", "load_best_model_at_end": False}
    recipe = sst2_recipe(rows, tmp_path / "unused", training=training, model=str(custom_checkpoint))
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    (custom_checkpoint / "recipe.yaml").write_text(yaml.safe_dump({**recipe, "trust_remote_code": False}))
    (tmp_path / "hub.yaml").write_text(yaml.safe_dump({**recipe, "model": "hftk-tests/no-such-model"}))
    return tmp_path


def test_remote_code_only_when_asked_and_no_network_for_local_models(recipes):
    report, _ = _probe(recipes)
    plain = report["without_trust"]
    assert plain["code_ran"] is False
    assert plain["trained"] == plain["predict_model"] == plain["pipeline"] == "BertForSequenceClassification"
    assert plain["tokenizer"].startswith("BertTokenizer")  # transformers 5: BertTokenizer is the fast one
    assert plain["attempts"] == []  # check, train, predict, evaluate, pipeline: no connection, no DNS lookup
    assert plain["evaluate"] == ["accuracy", "f1", "f1_macro"]

    asked = report["folder_asks"]  # recipe.yaml, config.json and tokenizer_config.json all say trust_remote_code
    assert asked["code_ran"] is False
    assert asked["predictor"] == asked["pipeline"] == "BertForSequenceClassification"
    assert asked["exits"] == {"predict": 0, "evaluate": 0, "embed": 0, "export": 0}
    assert asked["warnings"] and all("its own code stays unused" in w for w in asked["warnings"])

    trusted = report["with_trust"]
    assert trusted["flag_exit"] == 0
    assert trusted["code_ran"] is True
    assert (trusted["model"], trusted["tokenizer"]) == ("CustomModel", "CustomTokenizerFast")
    assert trusted["warnings"] and "runs Python code shipped with the model" in trusted["warnings"][0]
    assert trusted["attempts"] == []


def test_a_model_that_needs_its_own_code_is_refused_in_one_line(custom_checkpoint, tmp_path):
    """A model type transformers does not know loads only through its code: without the person's word, one line
    that says how to allow it, and the code never ran."""
    config = json.loads((custom_checkpoint / "config.json").read_text())
    (custom_checkpoint / "config.json").write_text(json.dumps({**config, "model_type": "hftk-custom-bert"}))
    (tmp_path / "in.txt").write_text("a fine film\n")
    env = {**os.environ, "HFTK_CODE_RAN": str(tmp_path / "ran"), "HF_MODULES_CACHE": str(tmp_path / "modules")}
    cmd = [sys.executable, "-m", "hftk", "predict", str(custom_checkpoint), "--task", "text-classification"]
    proc = subprocess.run(
        [*cmd, "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "out.jsonl")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "ships Python code of its own" in proc.stderr and "--trust-remote-code" in proc.stderr
    assert not (tmp_path / "ran").exists() and not (tmp_path / "out.jsonl").exists()


@pytest.mark.slow
def test_a_hub_id_is_what_goes_online(recipes):
    """One probe of the Hub (refused), then the one-line error: no retries of every file (about a minute)."""
    report, proc = _probe(recipes, "hub")
    assert report["hub_exit"] == 2 and report["hub_attempts"] > 0
    assert "hftk: error: hftk-tests/no-such-model:" in proc.stderr
