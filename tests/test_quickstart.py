"""The README's "Your own CSV" quick start, run as it stands from an empty folder: the block is read from the
README, so the commands a new user copies cannot drift from what works."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .helpers import ROOT


def quick_start() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Your own CSV", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, flags=re.S)[1]


@pytest.mark.slow  # a cold start of check, train, predict and serve: about 3 minutes on 2 busy cores
def test_the_readme_quick_start_runs_in_an_empty_folder(tmp_path):
    block = quick_start()
    before, serve_line, curl_line = re.match(r"(.*\n)(hftk serve .*)\n(curl .*)\n", block, flags=re.S).groups()
    with socket.socket() as s:  # a free port in place of 8000
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # `hftk` as the venv installs it: this interpreter's bin/, with the package under test first on the path
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", before], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    preds = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert [p["text"] for p in preds] == ["a gripping film", "duller than dishwater"]
    assert all(p["label"] in ("positive", "negative") for p in preds)
    assert "## Use" in (tmp_path / "runs/reviews/README.md").read_text()
    command = serve_line.split("&")[0].split()
    server = subprocess.Popen(
        [*command[:-1], str(port)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "hftk serve did not come up"
                time.sleep(1)
        curl = curl_line.replace("localhost:8000", f"127.0.0.1:{port}")
        answer = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, check=True).stdout
        (prediction,) = json.loads(answer)["predictions"]
        assert prediction["label"] in ("positive", "negative")
    finally:
        server.terminate()
        server.wait(timeout=60)
