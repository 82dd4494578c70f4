"""JSICK's Japanese train pairs in JNLI's columns, the training split of recipes/jnli-ja.yaml (see SOURCE.md).

JNLI's own train split is not in the repository (see SOURCE.md); JSICK has the same three labels. A recipe maps one
set of columns for every split, so the JSICK rows are rewritten with JNLI's names: `sentence1` (premise),
`sentence2` (hypothesis), `label`. Nothing else changes; rows keep their order. Deterministic:

    python data/ja/jnli/from_jsick.py   # rewrites train-jsick.jsonl beside this file
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
JSICK = HERE.parent / "jsick" / "train.tsv"
LABELS = {"entailment", "neutral", "contradiction"}  # JNLI's, and JSICK's entailment_label_Ja


def main() -> None:
    with JSICK.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    out = []
    for r in rows:
        if r["entailment_label_Ja"] not in LABELS:
            raise SystemExit(f"{JSICK}: pair {r['pair_ID']}: label {r['entailment_label_Ja']!r} is not JNLI's")
        out.append(
            {
                "sentence_pair_id": f"jsick-train-{r['pair_ID']}",
                "sentence1": r["sentence_A_Ja"],
                "sentence2": r["sentence_B_Ja"],
                "label": r["entailment_label_Ja"],
            }
        )
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out)
    (HERE / "train-jsick.jsonl").write_text(text, encoding="utf-8")
    print(f"train-jsick.jsonl: {len(out)} pairs, {dict(Counter(r['label'] for r in out))}")


if __name__ == "__main__":
    main()
