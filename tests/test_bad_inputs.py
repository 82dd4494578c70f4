"""Every case in tests/bad_inputs/ through the real CLI: exit 2, one `hftk: error:` line naming the file and
what to do, no traceback, and nothing already in the folder changed.

The cases run in one subprocess (see tests/bad_inputs/harness.py), so the suite costs one torch import, not one
per case. Selecting a few cases (`pytest -k empty`) runs only those.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .bad_inputs.harness import discover
from .helpers import ROOT

CASES = discover()


@pytest.fixture(scope="module")
def results(request, tmp_path_factory) -> dict:
    selected = [
        item.callspec.params["case"]
        for item in request.session.items
        if item.module is sys.modules[__name__] and hasattr(item, "callspec") and "case" in item.callspec.params
    ]
    tmp = tmp_path_factory.mktemp("bad_inputs")
    out = tmp / "results.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.bad_inputs.harness",
            str(out),
            str(tmp / "cases"),
            *[str(c.path) for c in selected],
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, results):
    got = results[case.id]
    stderr = got["stderr"]
    assert "Traceback" not in stderr, stderr
    assert got["exit"] == case.exit, f"exit {got['exit']}, expected {case.exit}\n{stderr}\n{got['stdout']}"
    errors = [line for line in stderr.splitlines() if line.startswith("hftk: error: ")]
    assert len(errors) == case.lines, stderr
    if case.exit == 2:
        # Nothing but the error line(s): no library warnings or progress bars around them.
        assert [line for line in stderr.splitlines() if line.strip()] == errors, stderr
    for needle in case.expect:
        assert needle in ("\n".join(errors) if case.exit == 2 else stderr + got["stdout"]), stderr
    for needle in case.stdout:
        assert needle in got["stdout"], got["stdout"]
    assert got["changed"] == [], f"the command changed {got['changed']}"


def test_every_required_kind_of_bad_input_has_a_case():
    """The issue's list, by case file name; a kind with no case fails here."""
    names = {c.id.rsplit("/", 1)[-1] for c in CASES}
    required = [
        "malformed_yaml",
        "unknown_key",
        "misspelled_key",
        "wrong_type",
        "missing_data_file",
        "empty_file",
        "non_utf8",
        "missing_column",
        "unseen_label",
        "too_long",
        "model_without_weights",
        "tokenizer_model_mismatch",
        "predict_output_is_a_directory",
        "set_bad_syntax",
    ]
    missing = [kind for kind in required if not any(kind in n for n in names)]
    assert not missing, missing
