"""Derive an English multiple-choice set from the SICK and STS-B pairs in data/en (see SOURCE.md).

Each row: a sentence (`question`), four `choices`, `label` the index of the one that follows from it or says the
same (SICK: an entailed hypothesis; STS-B: a second sentence scored >= 4 of 5). The three others are second
sentences of other pairs of the same source and split (STS-B: and genre): those sharing the most words with the
question (Jaccard), so that word overlap alone does not answer, leaving out any that shares 60 % or more of its
words with the gold answer (a near copy of the answer would be right too). Deterministic:

    python data/en/paraphrase_mc/derive.py   # rewrites train.jsonl and dev.jsonl beside this file
"""

from __future__ import annotations

import csv
import functools
import json
import random
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent
SEED = 17
CHOICES = 4
NEAR_COPY = 0.6  # a candidate sharing this share of its words with the gold answer is not a distractor
STSB_GOLD = 4.0  # STS-B: "mostly equivalent" (4) or "completely equivalent" (5)


def tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


@functools.cache  # every sentence is compared with every question of its group
def words(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"\w+", text.lower()))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def pairs(split: str) -> list[tuple[str, str, str, str]]:
    """(source, group, sentence, gold) for every pair whose second sentence follows from or restates the first."""
    out = []
    for r in tsv(DATA / "sick" / f"{split}.tsv"):
        if r["label"] == "entailment":
            out.append(("sick", "sick", r["premise"].strip(), r["hypothesis"].strip()))
    for r in tsv(DATA / "stsb" / f"{split}.tsv"):
        if float(r["score"]) >= STSB_GOLD:
            out.append(("stsb", f"stsb/{r['genre']}", r["sentence1"].strip(), r["sentence2"].strip()))
    return out


def derive(split: str, rng: random.Random) -> list[dict]:
    found = pairs(split)
    # Every second sentence of the split, by group: a distractor is never the gold of a pair with this sentence.
    pool: dict[str, list[tuple[str, str]]] = {}
    for r in tsv(DATA / "sick" / f"{split}.tsv"):
        pool.setdefault("sick", []).append((r["premise"].strip(), r["hypothesis"].strip()))
    for r in tsv(DATA / "stsb" / f"{split}.tsv"):
        pool.setdefault(f"stsb/{r['genre']}", []).append((r["sentence1"].strip(), r["sentence2"].strip()))
    rows = []
    for source, group, question, gold in found:
        q, g = words(question), words(gold)
        candidates = sorted({s for first, s in pool[group] if first != question} - {question, gold})
        candidates = [s for s in candidates if jaccard(g, words(s)) < NEAR_COPY]
        rng.shuffle(candidates)  # ties in overlap fall in a seeded order
        candidates.sort(key=lambda s: -jaccard(q, words(s)))
        choices = candidates[: CHOICES - 1]
        label = rng.randrange(CHOICES)
        choices.insert(label, gold)
        rows.append({"question": question, "choices": choices, "label": label, "source": source})
    rng.shuffle(rows)  # SICK and STS-B rows mixed: the first N rows are a fair sample
    return rows


def main() -> None:
    rng = random.Random(SEED)
    for split in ("train", "dev"):
        rows = derive(split, rng)
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (HERE / f"{split}.jsonl").write_text(text, encoding="utf-8")
        print(f"{split}.jsonl: {len(rows)} rows")


if __name__ == "__main__":
    main()
