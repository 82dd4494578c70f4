"""What writing the evaluation report adds to `hftk evaluate`: SST-2 dev (872 sentences) and CoNLL-2003 validation.

Each model is a short MiniLM run (the recipe's model and data; `--steps` optimizer steps, or `--sst2 DIR` / `--ner
DIR` for a trained folder such as the demo's runs/sst2-minilm). Then, in this process, one Predictor (what `hftk
evaluate` runs) evaluates the file `--repeats` times without the report and with it, alternately, and the medians
are printed with their ratio. The command's own start-up (imports, loading the model: the same with or without a
report) is timed once by running `hftk evaluate` as a user does, and the ratio over the whole command is printed
too. Goal (issue 27): the report adds at most 10 %.

    python bench/report_speed.py [--steps 100] [--repeats 5] [--sst2 DIR] [--ner DIR] [--out F]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hftk  # noqa: E402

CASES = {  # name: (recipe, its evaluation file); CoNLL-2003 is not redistributable: the shared copy beside the repo
    "sst2": (ROOT / "recipes/sst2-minilm.yaml", ROOT / "data/en/sst2/dev.tsv"),
    "ner": (ROOT / "recipes/conll2003-minilm.yaml", ROOT.parent / "shared/data/en/conll2003/valid.txt"),
}


def trained(name: str, steps: int, work: Path) -> Path:
    recipe, _ = CASES[name]
    sets = {
        "data.validation": None,
        "keep_checkpoints": False,
        "training.max_steps": steps,
        "training.eval_strategy": "no",
        "training.save_strategy": "no",
        "training.disable_tqdm": True,
    }
    out = work / name
    hftk.train(recipe, overrides=sets, output_dir=out)
    return out


def measure(model: Path, data: Path, repeats: int, work: Path) -> dict[str, Any]:
    predictor = hftk.Predictor(model)
    records = predictor.task.read(data).whole()
    predictor.evaluate(records)  # warm: the first batch's kernels, the tokenizer's caches
    plain, reported = [], []
    for i in range(repeats):
        start = time.perf_counter()
        predictor.evaluate(records)
        plain.append(time.perf_counter() - start)
        start = time.perf_counter()
        predictor.evaluate(records, report=work / f"report-{model.name}-{i}")
        reported.append(time.perf_counter() - start)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    command = [sys.executable, "-m", "hftk", "evaluate", str(model), "--data", str(data), "--json"]
    subprocess.run(command, check=True, capture_output=True, env=env)
    whole = time.perf_counter() - start
    added = statistics.median(reported) - statistics.median(plain)
    return {
        "rows": len(records),
        "evaluate_s": statistics.median(plain),
        "with_report_s": statistics.median(reported),
        "ratio": statistics.median(reported) / statistics.median(plain),
        "command_s": whole,
        "command_ratio": (whole + added) / whole,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sst2", type=Path, help="a trained SST-2 folder (default: train one for --steps)")
    parser.add_argument("--ner", type=Path, help="a trained CoNLL folder (default: train one for --steps)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, given in (("sst2", args.sst2), ("ner", args.ner)):
            model = given or trained(name, args.steps, work)
            results[name] = measure(model, CASES[name][1], args.repeats, work)
    print(f"{'file':<8} {'rows':>6} {'evaluate s':>11} {'+ report s':>11} {'ratio':>6} {'command s':>10} {'ratio':>6}")
    for name, r in results.items():
        print(
            f"{name:<8} {r['rows']:>6} {r['evaluate_s']:>11.2f} {r['with_report_s']:>11.2f} {r['ratio']:>6.3f}"
            f" {r['command_s']:>10.2f} {r['command_ratio']:>6.3f}"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
