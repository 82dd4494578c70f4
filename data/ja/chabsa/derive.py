"""Derive sentence-level sentiment (positive / negative) from chABSA's opinion annotations, split by document.

chABSA (see SOURCE.md) marks opinions inside sentences of securities reports, each with a polarity. A sentence's
label is the polarity most of its opinions have: sentences without opinions, and sentences whose two most frequent
polarities tie, are left out; so are the few whose majority is `neutral`, as MARC-ja (the JGLUE task this set
stands in for) leaves out 3-star reviews: what remains is binary. Then whole documents (one company's report each)
go to dev or train, so no document is in both: DEV_SHARE of them, drawn with a seeded shuffle. Deterministic:

    python data/ja/chabsa/derive.py [--source DIR]   # rewrites train.jsonl and dev.jsonl beside this file

DIR holds `chabsa_annotations.jsonl` (the project's shared copy, by default `shared/data/ja/chabsa` beside the
repository): all 6,119 sentences of the 230 annotation files, opinions kept as annotated.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[3] / "shared" / "data" / "ja" / "chabsa"  # the repository's parent folder holds shared/
SEED = 17
DEV_SHARE = 0.2  # of the documents: 46 of 230
LABELS = ("positive", "negative")


def label_of(opinions: list[dict]) -> str | None:
    """The polarity with strictly the most opinions; None without opinions or on a tie."""
    counts = Counter(o["polarity"] for o in opinions).most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SHARED, help="folder with chabsa_annotations.jsonl")
    source = parser.parse_args().source / "chabsa_annotations.jsonl"
    sentences = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()]
    labelled = Counter()  # every majority label, neutral included: checks against the shared SOURCE.md counts
    rows = []
    for s in sentences:
        label = label_of(s["opinions"])
        labelled[label] += 1
        if label in LABELS:
            rows.append({"id": s["id"], "document_id": s["document_id"], "text": s["text"], "label": label})
    documents = sorted({s["document_id"] for s in sentences})
    random.Random(SEED).shuffle(documents)
    dev = set(documents[: round(len(documents) * DEV_SHARE)])
    for name, keep in (("train", lambda r: r["document_id"] not in dev), ("dev", lambda r: r["document_id"] in dev)):
        part = [r for r in rows if keep(r)]
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part)
        (HERE / f"{name}.jsonl").write_text(text, encoding="utf-8")
        docs = len({r["document_id"] for r in part})
        print(f"{name}.jsonl: {len(part)} sentences from {docs} documents, {dict(Counter(r['label'] for r in part))}")
    print(f"majority labels of all {len(sentences)} sentences (None: no opinion or a tie): {dict(labelled)}")


if __name__ == "__main__":
    main()
