"""Start-up time of `hftk predict DIR --input 5-lines.txt`: wall and CPU time of the whole command in fresh
processes (medians of --runs; on a shared machine CPU seconds are the steadier figure),
then where one fresh process spends it (imports, the model folder's recipe, model and
tokenizer load, the prediction) and which heavy modules it imported.

    python bench/startup.py [--model runs/sst2-minilm] [--runs 5] [--code DIR]

--code: the checkout whose hftk is measured (default: this one), e.g. a worktree of main for "before".
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINES = ["a gripping film", "the worst movie of the year", "fine acting, dull plot", "I loved it", "not my cup of tea"]
HEAVY = ("optuna", "matplotlib", "peft", "sklearn", "pandas", "datasets", "fastapi", "transformers.training_args")

# One fresh process, its stages timed in order: what `hftk predict` does, as the library calls it.
STAGES = """
import json, sys, time
marks = [(time.perf_counter(), time.process_time())]; times = {}
def mark(stage):
    marks.append((time.perf_counter(), time.process_time()))
    times[stage] = [marks[-1][0] - marks[-2][0], marks[-1][1] - marks[-2][1]]
import hftk.cli, hftk.inference.predict as p
mark("import hftk")
import torch, transformers.utils.logging
mark("import torch, transformers")
recipe = p._recipe_for(p.resolve_model(sys.argv[1]), None, {})
mark("read the folder's recipe")
predictor = p.Predictor(sys.argv[1])
mark("Predictor (model, tokenizer, precision)")
predictor.predict(sys.argv[2:])
mark("predict 5 lines")
print(json.dumps({"times": times, "heavy": [m for m in HEAVY if m in sys.modules]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "runs" / "sst2-minilm"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--code", default=str(ROOT))
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": args.code, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory() as tmp:
        lines = Path(tmp) / "5-lines.txt"
        lines.write_text("\n".join(LINES) + "\n")
        command = [sys.executable, "-m", "hftk", "predict", args.model, "--input", str(lines)]
        walls, cpus = [], []
        for _ in range(args.runs):
            before, start = _children_cpu(), time.perf_counter()
            run = [*command, "--output", str(Path(tmp) / "out.jsonl")]
            subprocess.run(run, env=env, check=True, capture_output=True)
            walls.append(time.perf_counter() - start)
            cpus.append(_children_cpu() - before)
    print(f"hftk predict, 5 lines, {args.code}, {args.runs} fresh runs:")
    print(f"  median wall {statistics.median(walls):.1f} s ({', '.join(f'{w:.1f}' for w in walls)})")
    print(f"  median CPU  {statistics.median(cpus):.1f} s ({', '.join(f'{c:.1f}' for c in cpus)})")
    script = f"HEAVY = {HEAVY!r}\n" + STAGES
    out = subprocess.run([sys.executable, "-c", script, args.model, *LINES], env=env, check=True, capture_output=True,
                         text=True, cwd=args.code)  # fmt: skip
    stages = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  {'one fresh process, by stage':<42} {'wall':>7} {'CPU':>7}")
    for stage, (wall, cpu) in stages["times"].items():
        print(f"  {stage:<42} {wall:6.2f}s {cpu:6.2f}s")
    print(f"  heavy modules imported: {', '.join(stages['heavy']) or 'none'}")


def _children_cpu() -> float:
    """User + system seconds of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
