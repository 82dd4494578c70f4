"""`python -m hftk` with an observer: what this process trained on and which files it wrote.

Run in place of `-m hftk` (`torchrun ... tests/ddp_probe.py train RECIPE`): it wraps `Trainer.training_step`
to record every example this rank trained on (a digest of its unpadded token ids), wraps Python's file opening
to record writes under the output folder, then runs the `hftk` module exactly as `-m hftk` does. At exit it
writes `$HFTK_PROBE_DIR/rank<RANK>.json`. Nothing in hftk is replaced; the real path runs.
"""

from __future__ import annotations

import atexit
import builtins
import hashlib
import io
import json
import os
import runpy
import sys
import time
from pathlib import Path

RANK = int(os.environ.get("RANK", "0"))
PROBE = Path(os.environ["HFTK_PROBE_DIR"])
WATCH = Path(os.environ["HFTK_PROBE_WATCH"]).resolve()  # the output folder
seen: list[str] = []
writes: list[str] = []


def _record_writes(real):
    def opener(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+"):
            path = Path(file).resolve()
            if WATCH in path.parents:
                writes.append(str(path.relative_to(WATCH)))
        return real(file, mode, *args, **kwargs)

    return opener


builtins.open = _record_writes(builtins.open)
io.open = _record_writes(io.open)

from transformers import Trainer  # noqa: E402

_step = Trainer.training_step


def training_step(self, model, inputs, *args, **kwargs):
    ids, mask = inputs["input_ids"].tolist(), inputs["attention_mask"].tolist()
    for row, keep in zip(ids, mask):
        tokens = [t for t, m in zip(row, keep) if m]
        seen.append(hashlib.sha1(json.dumps(tokens).encode()).hexdigest()[:16])
    return _step(self, model, inputs, *args, **kwargs)


Trainer.training_step = training_step


@atexit.register
def _report() -> None:
    PROBE.mkdir(parents=True, exist_ok=True)
    (PROBE / f"rank{RANK}.json").write_text(json.dumps({"rank": RANK, "seen": seen, "writes": writes}))


# A late rank: every process must check the output folder before any writes to it.
time.sleep(float(os.environ.get("HFTK_PROBE_DELAY_OTHER_RANKS", "0")) if RANK else 0)
sys.argv = ["hftk", *sys.argv[1:]]
runpy.run_module("hftk", run_name="__main__", alter_sys=True)
