"""Peak memory and time to the first training step as the corpus grows: hftk vs run_mlm.py's way, cold and warm.

(a) hftk train recipes/mlm-domain-en.yaml on a synthetic corpus (data/en/gutenberg paragraphs repeated to the size,
one per line), train split only, 2 steps; (b) transformers' run_mlm.py way: load_dataset("text"), batched tokenize
and group_texts into max_length blocks (num_proc=2), DataCollatorForLanguageModeling, AutoModelForMaskedLM, Trainer,
2 steps on CPU; (c) hftk train recipes/sst2-minilm.yaml on a CSV of SST-2 rows repeated. Each run is a child
process, cold (fresh HF_DATASETS_CACHE folder) then warm (same cache, new output dir), bounded by --timeout.
Memory: the child's process tree (num_proc workers included) is polled every 0.2 s with psutil. Peak RSS: largest
tree-summed RSS (pages shared by forked workers count once per process); peak PSS: largest tree-summed PSS (shared
pages split among sharers); JSON max_rss_1proc_gb: wait4's ru_maxrss, the largest single process. First step:
seconds from launch to the end of step 1 (hftk: arrival of its first `{'loss': ...}` log, logging_steps=1, on the
unbuffered output; baseline: a TrainerCallback's on_step_end stamp). At small sizes the peak is training's.

    python bench/data_scale.py [--sizes 10,100] [--csv-rows 1000000] [--skip-baseline] [--timeout 1800] [--workdir D]
    python bench/data_scale.py --sizes 2,10 --csv-rows 0      # quick; --sizes 10,100,1000 adds 1 GB
    python bench/data_scale.py --sizes 10,1000 --csv-rows 0 --skip-baseline --streaming   # streaming's memory
    python bench/data_scale.py --sizes 0 --csv-rows 100000,1000000 --streaming   # a streamed classifier's memory
    python bench/data_scale.py --baseline-child CORPUS CACHE_DIR    # (b) once (-c)
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
MLM_RECIPE, CSV_RECIPE = "recipes/mlm-domain-en.yaml", "recipes/sst2-minilm.yaml"
MARK = "DATA_SCALE_JSON "
GB = 1024**3


def mlm_recipe() -> dict[str, Any]:
    import yaml

    return yaml.safe_load((ROOT / MLM_RECIPE).read_text(encoding="utf-8"))


def baseline_child(corpus: str, cache: str) -> None:
    """run_mlm.py's data path and Trainer; prints MARK + JSON lines of time.time() stamps."""
    start = time.time()
    from itertools import chain

    import transformers as tf
    from datasets import load_dataset

    from hftk.models.loading import resolve_model

    recipe = mlm_recipe()
    block, path = recipe["max_length"], resolve_model(recipe["model"])
    raw = load_dataset("text", data_files=corpus, cache_dir=cache)
    tokenizer = tf.AutoTokenizer.from_pretrained(path)
    model = tf.AutoModelForMaskedLM.from_pretrained(path)

    def tokenize_function(examples):
        return tokenizer(examples["text"], return_special_tokens_mask=True)

    def group_texts(examples):  # run_mlm.py's: concatenate all, drop the remainder, cut into blocks
        concatenated = {k: list(chain(*examples[k])) for k in examples}
        total_length = (len(concatenated[next(iter(examples))]) // block) * block
        return {k: [t[i : i + block] for i in range(0, total_length, block)] for k, t in concatenated.items()}

    tokenized = raw.map(tokenize_function, batched=True, num_proc=2, remove_columns=raw["train"].column_names)
    grouped = tokenized.map(group_texts, batched=True, num_proc=2)
    data_ready = time.time()

    class FirstStep(tf.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                print("\n" + MARK + json.dumps({"step1": time.time()}), flush=True)

    out = tempfile.mkdtemp(prefix="data_scale-baseline-")
    batch = recipe["training"]["per_device_train_batch_size"]
    kwargs = {"max_steps": 2, "per_device_train_batch_size": batch, "use_cpu": True, "save_strategy": "no"}
    args = tf.TrainingArguments(out, report_to="none", **kwargs)
    collator = tf.DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    trainer = tf.Trainer(model, args, collator, grouped["train"], processing_class=tokenizer, callbacks=[FirstStep()])
    trainer.train()
    shutil.rmtree(out, ignore_errors=True)
    info = {"start": start, "data_ready": data_ready, "end": time.time(), "blocks": len(grouped["train"])}
    print("\n" + MARK + json.dumps(info), flush=True)


def tree_memory(proc) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in bytes over a psutil process and all its descendants."""
    import psutil

    rss = pss = 0
    with contextlib.suppress(psutil.NoSuchProcess):
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                m = p.memory_full_info()
                rss, pss = rss + m.rss, pss + m.pss
    return rss, pss


def run_child(cmd: list[str], cache: Path, timeout: float) -> dict[str, Any]:
    """Run one child in its own process group, polling its tree's memory; times in seconds from launch."""
    import psutil

    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    t0 = time.time()
    pipe, out = subprocess.PIPE, subprocess.STDOUT
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=pipe, stderr=out, start_new_session=True)
    chunks: list[bytes] = []
    first_loss: list[float] = []

    def read(fd: int) -> None:
        prev = b""
        while chunk := os.read(fd, 65536):
            if not first_loss and b"'loss':" in prev[-16:] + chunk:
                first_loss.append(time.time())
            chunks.append(prev := chunk)

    reader = threading.Thread(target=read, args=(proc.stdout.fileno(),), daemon=True)  # type: ignore[union-attr]
    reader.start()
    ps, peak_rss, peak_pss, timed_out = psutil.Process(proc.pid), 0, 0, False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        rss, pss = tree_memory(ps)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        if time.time() - t0 > timeout:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.2)
    wall = time.time() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    with contextlib.suppress(ProcessLookupError, PermissionError):  # stragglers of this child's own group
        os.killpg(proc.pid, signal.SIGKILL)
    reader.join(10)
    text = b"".join(chunks).decode("utf-8", "replace")
    marks: dict[str, Any] = {}
    for line in text.splitlines():
        if MARK in line:
            with contextlib.suppress(ValueError):
                marks.update(json.loads(line.split(MARK, 1)[1]))
    step1 = marks.get("step1") or (first_loss[0] if first_loss else None)
    result: dict[str, Any] = {
        "rc": proc.returncode,
        "timed_out": timed_out,
        "wall_s": round(wall, 2),
        "first_step_s": round(step1 - t0, 2) if step1 else None,
        "peak_rss_gb": round(peak_rss / GB, 3),
        "peak_pss_gb": round(peak_pss / GB, 3),
        "max_rss_1proc_gb": round(usage.ru_maxrss * 1024 / GB, 3),  # Linux: KiB
    }
    if "data_ready" in marks:
        result |= {"data_ready_s": round(marks["data_ready"] - t0, 2), "blocks": marks["blocks"]}
    if proc.returncode != 0 or timed_out:
        result["error"] = text[-1500:]
    return result


def build_corpus(workdir: Path, mb: float) -> Path:
    """Gutenberg paragraphs (one per line) repeated to `mb` million bytes."""
    path = workdir / f"corpus-{mb:g}MB.txt"
    if not path.exists():
        texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "data/en/gutenberg").glob("*.txt"))]
        block = "".join(line.strip() + "\n" for t in texts for line in t.splitlines() if line.strip()).encode()
        size = int(mb * 1_000_000)
        with path.open("wb") as f:
            for _ in range(size // len(block)):
                f.write(block)
            f.write(block[: block.rfind(b"\n", 0, size % len(block)) + 1])  # whole lines only
    return path


def build_csv(workdir: Path, rows: int) -> Path:
    """sentence,label CSV (labels 0/1) of SST-2 train rows repeated to `rows` rows."""
    path = workdir / f"sst2-{rows}.csv"
    if not path.exists():
        lines = (ROOT / "data/en/sst2/train.tsv").read_text(encoding="utf-8").splitlines()[1:]
        pairs = [(t.strip(), int(y)) for t, y in (line.rsplit("\t", 1) for line in lines)]
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["sentence", "label"])
            writer.writerows(pairs[i % len(pairs)] for i in range(rows))
    return path


def cold_warm(case: str, size: str, cmd: list[str], workdir: Path, timeout: float) -> list[dict[str, Any]]:
    """Two runs of `cmd` ({out} and {cache} filled in): a fresh datasets cache, then the same cache."""
    cache, rows = Path(tempfile.mkdtemp(prefix="cache-", dir=workdir)), []
    for run in ("cold", "warm"):
        out = Path(tempfile.mkdtemp(prefix="out-", dir=workdir))
        argv = [a.replace("{out}", str(out)).replace("{cache}", str(cache)) for a in cmd]
        rows.append({"case": case, "size": size, "run": run, **run_child(argv, cache, timeout)})
        shutil.rmtree(out, ignore_errors=True)
        print(json.dumps(rows[-1] | {"error": rows[-1].get("error", "")[-300:]}), flush=True)
    shutil.rmtree(cache, ignore_errors=True)
    return rows


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "n/a"


def report(rows: list[dict[str, Any]], sizes: list[str]) -> None:
    def get(case: str, size: str, run: str, key: str) -> float | None:
        hit = [r for r in rows if (r["case"], r["size"], r["run"]) == (case, size, run) and r["rc"] == 0]
        return hit[0].get(key) if hit else None

    def warm_cold(case: str, size: str) -> str:
        return ratio(get(case, size, "warm", "first_step_s"), get(case, size, "cold", "first_step_s"))

    print("\n| case | size | run | status | peak RSS, tree (GB) | peak PSS, tree (GB) | first step (s) | wall (s) |")
    print("|---|---:|---|---|---:|---:|---:|---:|")
    for r in rows:
        status = "timeout" if r["timed_out"] else ("ok" if r["rc"] == 0 else f"failed rc={r['rc']}")
        first = f"{r['first_step_s']:.1f}" if r["first_step_s"] else "n/a"
        cells = [r["case"], r["size"], r["run"], status, f"{r['peak_rss_gb']:.2f}", f"{r['peak_pss_gb']:.2f}"]
        print("| " + " | ".join([*cells, first, f"{r['wall_s']:.1f}"]) + " |")
    h, b, c = "mlm hftk", "mlm baseline", "csv hftk"
    print("\n| size | hftk/baseline, cold: peak RSS | peak PSS | first step | warm/cold first step: hftk | baseline |")
    print("|---:|---:|---:|---:|---:|---:|")
    for s in sizes:
        cells = [ratio(get(h, s, "cold", k), get(b, s, "cold", k)) for k in ("peak_rss_gb", "peak_pss_gb")]
        cells += [ratio(get(h, s, "cold", "first_step_s"), get(b, s, "cold", "first_step_s"))]
        cells += [warm_cold(h, s), warm_cold(b, s)]
        print(f"| {s} | " + " | ".join(cells) + " |")
    for s in {r["size"] for r in rows if r["case"] == c}:
        print(f"\n{c}, {s}: first step warm/cold {warm_cold(c, s)}")
    for stream in ("mlm hftk streaming", "csv hftk streaming"):
        seen = list(dict.fromkeys(r["size"] for r in rows if r["case"] == stream))
        if len(seen) > 1 and get(stream, seen[0], "cold", "peak_rss_gb"):
            rss = ratio(get(stream, seen[-1], "cold", "peak_rss_gb"), get(stream, seen[0], "cold", "peak_rss_gb"))
            print(f"\n{stream}: peak RSS, {seen[-1]} / {seen[0]}: {rss}   goal: independent of the data's size")
    if len(sizes) > 1:
        rss, pss = (
            ratio(get(h, sizes[-1], "cold", k), get(h, sizes[0], "cold", k)) for k in ("peak_rss_gb", "peak_pss_gb")
        )
        print(f"\nhftk peak, {sizes[-1]} / {sizes[0]} (cold): RSS {rss}, PSS {pss}   goal <= 1.3")
    for r in rows:
        if r.get("error"):
            print(f"\n{r['case']} {r['size']} {r['run']} failed; output tail:\n{r['error'][-600:]}")
    print("\nraw:\n" + json.dumps(rows, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,100", help="corpus sizes in MB (1e6 bytes), comma-separated")
    ap.add_argument("--csv-rows", default="1000000", help="rows of the CSV cases, comma-separated (0 skips them)")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--streaming", action="store_true", help="data.streaming: true instead (no cache, no baseline)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per child run")
    ap.add_argument("--workdir", type=Path, help="corpora, caches, outputs (default: a temp folder, removed)")
    ap.add_argument("--baseline-child", "-c", nargs=2, metavar=("CORPUS", "CACHE_DIR"), help="run (b) once")
    args = ap.parse_args()
    if args.baseline_child:
        return baseline_child(*args.baseline_child)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="data_scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    mbs = sorted(float(s) for s in args.sizes.split(",") if float(s) > 0)
    no_val = "validation_fraction" if "validation_fraction" in mlm_recipe()["data"] else "validation"
    load = os.getloadavg()[0]
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load average {load:.1f}; workdir {workdir}")
    steps = ["--set", "training.max_steps=2", "--set", "training.logging_steps=1", "--set", "output_dir={out}"]
    hftk = [sys.executable, "-m", "hftk", "train"]
    rows: list[dict[str, Any]] = []
    for mb in mbs:
        corpus, size = str(build_corpus(workdir, mb)), f"{mb:g} MB"
        sets = ["--set", f"data.train={corpus}", "--set", f"data.{no_val}=null", *steps, "--overwrite"]
        if args.streaming:  # read, tokenised and packed on the fly: the run never holds or stores the corpus
            streamed = [*hftk, MLM_RECIPE, *sets, "--set", "data.streaming=true"]
            rows += cold_warm("mlm hftk streaming", size, streamed, workdir, args.timeout)
            continue
        rows += cold_warm("mlm hftk", size, [*hftk, MLM_RECIPE, *sets], workdir, args.timeout)
        if not args.skip_baseline:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--baseline-child", corpus, "{cache}"]
            rows += cold_warm("mlm baseline", size, cmd, workdir, args.timeout)
    for n in sorted(int(s) for s in args.csv_rows.split(",") if int(s) > 0):
        table = build_csv(workdir, n)
        sets = ["--set", f"data.train={table}", "--set", "data.validation=null", *steps, "--overwrite"]
        if args.streaming:  # read and encoded on the fly, a batch of rows at a time
            sets += ["--set", "data.streaming=true"]
        case = "csv hftk streaming" if args.streaming else "csv hftk"
        rows += cold_warm(case, f"{n:,} rows", [*hftk, CSV_RECIPE, *sets], workdir, args.timeout)
    report(rows, [f"{mb:g} MB" for mb in mbs])
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
