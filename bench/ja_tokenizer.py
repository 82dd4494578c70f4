"""Fast Japanese tokenizer vs transformers' BertJapaneseTokenizer on every Japanese text in the shared data.

Run: HF_HUB_OFFLINE=1 python bench/ja_tokenizer.py [--data /work/shared/data/ja] [--limit N]

For the tiny wordpiece and char fixtures (hftk.testing.fixtures) it prints, per source: inputs, inputs whose ids equal
the slow tokenizer's (the first mismatch if any), tokens whose offsets do not map back to them, and speed:
the fast tokenizer's batched call against the slow one's normal call on the same list, in the same process.
Results go to the "Japanese tokenizer" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import re
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATA = Path("/work/shared/data/ja")
SECTION = "## Japanese tokenizer (bench/ja_tokenizer.py)"

Input = str | tuple[str, str]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _squad(path: Path) -> list[Input]:
    """(question, context) pairs, as QA models read them."""
    out: list[Input] = []
    for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
        for paragraph in article["paragraphs"]:
            out += [(qa["question"], paragraph["context"]) for qa in paragraph["qas"]]
    return out


def load_sources(data: Path) -> dict[str, list[Input]]:
    """Every Japanese text of the shared data, grouped by source; sentence pairs stay pairs."""
    sources: dict[str, list[Input]] = {}
    pairs = []
    for name in ("jnli/valid-v1.3.json", "jsts/train-v1.3.json", "jsts/valid-v1.3.json"):
        pairs += [(r["sentence1"], r["sentence2"]) for r in _jsonl(data / "jglue" / name)]
    for name in ("train.tsv", "test.tsv"):
        with open(data / "jsick" / name, encoding="utf-8", newline="") as f:
            pairs += [(r["sentence_A_Ja"], r["sentence_B_Ja"]) for r in csv.DictReader(f, delimiter="\t")]
    sources["JNLI/JSTS/JSICK pairs"] = pairs
    qa = _squad(data / "jglue/jsquad/valid-v1.3.json")
    for path in sorted((data / "jaquad").glob("*.json")):
        qa += _squad(path)
    sources["JSQuAD/JaQuAD question+context"] = qa
    commonsense = []
    for name in ("train-v1.3.json", "valid-v1.3.json"):
        for r in _jsonl(data / "jglue/jcommonsenseqa" / name):
            commonsense += [(r["question"], r[f"choice{i}"]) for i in range(5)]
    sources["JCommonsenseQA question+choice"] = commonsense
    singles = [r["text"] for r in _jsonl(data / "chabsa/chabsa_annotations.jsonl")]
    for path in sorted((data / "jcola").glob("*.json")):
        singles += [r["sentence"] for r in _jsonl(path)]
    singles += [r["text"] for r in json.loads((data / "stockmark_ner_wikipedia/ner.json").read_text("utf-8"))]
    sources["chABSA/JCoLA/NER sentences"] = singles
    lines = []
    for path in sorted((data / "domain_text").glob("*.txt")):
        lines += [line for line in path.read_text(encoding="utf-8").splitlines() if line]
    sources["domain text lines"] = lines
    return sources


def _call(tokenizer, batch: list[Input], **kwargs):
    if batch and isinstance(batch[0], tuple):
        return tokenizer([a for a, _ in batch], [b for _, b in batch], **kwargs)
    return tokenizer(batch, **kwargs)


_MARKS = re.compile(r"[\u0300-\u036f\u3099\u309a\uff9e\uff9f]+")


def offset_status(text: str, start: int, end: int, token: str, lower: bool = False) -> str:
    """How a token's span of the original text relates to the token.

    "ok": the span, NFKC-normalised (and lower-cased), is the token (minus `##`). "expanded": the token is part of
    one character that NFKC turns into several ("…" -> "...", "㈱" -> "(株)"); it can only point at the whole
    character. "composed": the span ends before a voicing or combining mark that NFKC merged into its last
    character ("ﾎﾞ" -> "ボ"); `tokenizers` aligns the merged character to its base only. "bad": anything else.
    """

    def norm(s: str) -> str:
        s = unicodedata.normalize("NFKC", s)
        return s.lower() if lower else s

    piece = token[2:] if token.startswith("##") else token
    span = norm(text[start:end])
    if span == piece:
        return "ok"
    if piece in span and len(span) > end - start:
        return "expanded"
    marks = _MARKS.match(text, end)
    if marks and norm(text[start : marks.end()]) == piece:
        return "composed"
    return "bad"


def _offset_problems(fast, batch: list[Input], lower: bool) -> dict[str, int]:
    """Count of checked tokens by `offset_status` ([UNK] and special tokens are not checked)."""
    enc = _call(fast, batch, return_offsets_mapping=True)
    counts = {"ok": 0, "expanded": 0, "composed": 0, "bad": 0}
    unk = fast.unk_token
    first_bad = None
    for i, item in enumerate(batch):
        texts = item if isinstance(item, tuple) else (item,)
        for token, seq, (start, end) in zip(enc.tokens(i), enc.sequence_ids(i), enc["offset_mapping"][i]):
            if seq is None or token == unk:
                continue
            status = offset_status(texts[seq], start, end, token, lower)
            counts[status] += 1
            if status == "bad" and first_bad is None:
                first_bad = (texts[seq], token, start, end)
    if first_bad:
        print(f"  first bad offset: {first_bad!r}")
    return counts


def bench(fixture: Path, sources: dict[str, list[Input]]) -> list[dict]:
    from transformers import AutoTokenizer

    from hftk.models.japanese import load_bert_japanese_fast

    slow = AutoTokenizer.from_pretrained(fixture)
    fast = load_bert_japanese_fast(str(fixture))
    rows = []
    for name, batch in sources.items():
        t0 = time.perf_counter()
        slow_ids = _call(slow, batch)["input_ids"]
        slow_s = time.perf_counter() - t0
        fast.clear_cache()  # no head start from an earlier call
        t0 = time.perf_counter()
        fast_ids = _call(fast, batch)["input_ids"]
        fast_s = time.perf_counter() - t0
        same = sum(a == b for a, b in zip(slow_ids, fast_ids))
        first = next((i for i, (a, b) in enumerate(zip(slow_ids, fast_ids)) if a != b), None)
        if first is not None:
            print(f"  first mismatch in {name}: {batch[first]!r}")
            print(f"    slow {slow.convert_ids_to_tokens(slow_ids[first])}")
            print(f"    fast {fast.convert_ids_to_tokens(fast_ids[first])}")
        counts = _offset_problems(fast, batch, fast.do_lower_case)
        row = dict(
            source=name, inputs=len(batch), same=same, **counts, slow=len(batch) / slow_s, fast=len(batch) / fast_s
        )
        rows.append(row)
        print(
            f"  {name}: {same}/{len(batch)} identical ids; offsets of {sum(counts.values())} tokens: {counts['bad']} "
            f"wrong, {counts['expanded']} inside an expanding character, {counts['composed']} before a merged mark; "
            f"slow {row['slow']:.0f}/s, fast {row['fast']:.0f}/s, {row['fast'] / row['slow']:.2f}x"
        )
    return rows


def _table(rows: list[dict]) -> list[str]:
    lines = [
        "| source | inputs | identical ids | tokens checked | offsets wrong | in expanding char | before merged mark "
        "| slow texts/s | fast texts/s | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    n = sum(r["inputs"] for r in rows)
    total = dict(source="**all**", inputs=n, slow=n / sum(r["inputs"] / r["slow"] for r in rows))
    total["fast"] = n / sum(r["inputs"] / r["fast"] for r in rows)
    for key in ("same", "ok", "expanded", "composed", "bad"):
        total[key] = sum(r[key] for r in rows)
    for r in [*rows, total]:
        checked = r["ok"] + r["expanded"] + r["composed"] + r["bad"]
        lines.append(
            f"| {r['source']} | {r['inputs']:,} | {r['same']:,} | {checked:,} | {r['bad']:,} | {r['expanded']:,} "
            f"| {r['composed']:,} | {r['slow']:,.0f} | {r['fast']:,.0f} | {r['fast'] / r['slow']:.2f}× |"
        )
    return lines


def write_results(results: dict[str, list[dict]], path: Path) -> None:
    """Add or replace this benchmark's section of RESULTS.md, leaving the others as they are."""
    import tokenizers
    import transformers

    body = [
        SECTION,
        "",
        f"Run {datetime.date.today().isoformat()} on 2 CPU cores; transformers {transformers.__version__}, "
        f"tokenizers {tokenizers.__version__}. Every Japanese text in /work/shared/data/ja (pairs as pairs); tiny "
        "fixtures from `hftk.testing.fixtures.build_bert_japanese_fixture` (MeCab unidic_lite). Speed: texts "
        "(or pairs) "
        "per second, the fast tokenizer's batched call vs `BertJapaneseTokenizer`'s normal call on the same list, "
        "same process, cold segmentation cache (repeated QA contexts are segmented once within a call); one run, "
        "ratios move by about ±0.15 from run to run on this machine. Offsets "
        "(`offset_status`): a token's span of the original text, NFKC-normalised, must equal the token (minus "
        "`##`); counted apart: tokens inside one character that NFKC expands ('…' → '...'), which can only point "
        "at the whole character, and spans that stop before a mark NFKC merged into their last character "
        "('ﾎﾞ' → 'ボ': `tokenizers` aligns the merged character to its base).",
        "",
    ]
    for fixture, rows in results.items():
        body += [f"### {fixture}", "", *_table(rows), ""]
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    start = text.find(SECTION)
    if start >= 0:
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start].rstrip("\n") + "\n\n" + "\n".join(body) + ("\n" + text[nxt + 1 :] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(body)
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=0, help="at most N inputs per source (0: all)")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"skipped: {args.data} is absent (the shared Japanese data is needed for this benchmark)")
        return 0
    from hftk.testing.fixtures import build_bert_japanese_fixture

    sources = load_sources(args.data)
    if args.limit:
        sources = {k: v[: args.limit] for k, v in sources.items()}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, char in (("wordpiece fixture", False), ("char fixture", True)):
            print(f"{label}:")
            fixture = build_bert_japanese_fixture(Path(tmp) / label.split()[0], char=char)
            results[label] = bench(fixture, sources)
    if not args.no_write and not args.limit:
        write_results(results, ROOT / "bench" / "RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
