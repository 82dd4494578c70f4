"""What verifying a cache entry when it is opened costs a warm start: hftk train on a large corpus, warm, with the
entry's files hashed (as shipped) against the same runs with the hash check patched out (today's trust), on the
same cache entry, interleaved, in child processes (bench/data_scale.py's runner: first step = first loss log).

    python bench/cache_verify.py [--size 100] [--repeats 3] [--workdir D]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_scale import MLM_RECIPE, build_corpus, mlm_recipe, run_child

# The same CLI with the hash comparison skipped: sizes and row counts are still checked (they cost nothing).
UNVERIFIED = (
    "import sys, hftk.features.cache as c; c._changed = lambda *a: None; from hftk.cli import main; sys.exit(main())"
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=float, default=100, help="corpus size in MB (1e6 bytes)")
    ap.add_argument("--repeats", type=int, default=3, help="warm runs of each kind, interleaved")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--workdir", type=Path)
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cache_verify-"))
    workdir.mkdir(parents=True, exist_ok=True)
    corpus = build_corpus(workdir, args.size)
    cache = workdir / "cache"
    no_val = "validation_fraction" if "validation_fraction" in mlm_recipe()["data"] else "validation"
    sets = ["--set", f"data.train={corpus}", "--set", f"data.{no_val}=null", "--set", "training.max_steps=2"]
    sets += ["--set", "training.logging_steps=1", "--overwrite"]
    train = ["train", MLM_RECIPE, *sets]
    kinds = {"verified": [sys.executable, "-m", "hftk"], "unverified": [sys.executable, "-c", UNVERIFIED]}

    def run(kind: str) -> dict:
        out = Path(tempfile.mkdtemp(prefix="out-", dir=workdir))
        result = run_child([*kinds[kind], *train, "--set", f"output_dir={out}"], cache, args.timeout)
        shutil.rmtree(out, ignore_errors=True)
        print(json.dumps({"kind": kind, **result, "error": result.get("error", "")[-300:]}), flush=True)
        return result

    cold = run("verified")
    (entry,) = [p for p in (cache / "hftk").iterdir() if not p.name.startswith(".")]
    manifest = json.loads((entry / "hftk-features.json").read_text())
    size = sum(s for s, _ in manifest["sums"].values())
    import hftk.features.cache as c

    start = time.perf_counter()
    assert c._changed(entry, manifest["files"], manifest["sums"]) is None
    hash_s = time.perf_counter() - start
    firsts: dict[str, list[float]] = {"verified": [], "unverified": []}
    for _ in range(args.repeats):
        for kind in ("unverified", "verified"):
            r = run(kind)
            if r["rc"] == 0 and r["first_step_s"]:
                firsts[kind].append(r["first_step_s"])
    med = {k: statistics.median(v) for k, v in firsts.items() if v}
    print(f"\ncorpus {args.size:g} MB; cache entry {size / 1e6:.0f} MB in {len(manifest['files'])} file(s)")
    print(f"cold first step {cold['first_step_s']} s; hashed here in {hash_s:.3f} s ({size / 1e6 / hash_s:.0f} MB/s)")
    print("warm first step (s), each run:", json.dumps(firsts))
    if len(med) == 2:
        print(f"warm first step, median: verified {med['verified']:.2f} s, unverified {med['unverified']:.2f} s, ")
        print(f"ratio verified/unverified {med['verified'] / med['unverified']:.3f}   goal <= 1.05")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
