"""Derive preference pairs from the Dolly rows in data/en/dolly (see SOURCE.md).

Each row keeps Dolly's instruction and context; `chosen` is its own response (written for it), `rejected` the
response of the next row in the same file whose category differs (an answer to another question, so the pair's
preference is unambiguous). Deterministic:

    python data/en/dolly_preference/derive.py   # rewrites train.jsonl and dev.jsonl beside this file
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOLLY = HERE.parent / "dolly"


def pairs(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    out = []
    for i, row in enumerate(rows):
        j = next(
            k % len(rows)
            for k in range(i + 1, i + len(rows))
            if rows[k % len(rows)]["category"] != row["category"]
            and rows[k % len(rows)]["response"].strip() != row["response"].strip()
        )
        out.append(
            {
                "instruction": row["instruction"],
                "context": row["context"],
                "chosen": row["response"],
                "rejected": rows[j]["response"],
                "category": row["category"],
            }
        )
    return out


def main() -> None:
    for name in ("train.jsonl", "dev.jsonl"):
        rows = [json.loads(line) for line in (DOLLY / name).read_text(encoding="utf-8").splitlines()]
        lines = [json.dumps(p, ensure_ascii=False) for p in pairs(rows)]
        (HERE / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
