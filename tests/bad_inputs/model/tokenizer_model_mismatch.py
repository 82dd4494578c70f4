"""A tokenizer with more tokens than the model's embedding table (a tokenizer copied from another checkpoint):
found from config.json by `hftk check`, before an index error deep in the first forward pass."""

import json
from pathlib import Path

CASE = {
    "run": "check recipe.yaml",
    "recipe": {"model": "./minilm"},
    "files": {"minilm": {"copy": "$MINILM"}},
    "expect": "the tokenizer has 30622 tokens but the model's config.json vocab_size is 30522; "
    "use the tokenizer saved with this model",
}


def setup(folder: Path) -> None:
    path = folder / "minilm" / "tokenizer.json"
    tok = json.loads(path.read_text(encoding="utf-8"))
    for i in range(100):
        tok["added_tokens"].append(
            {
                "id": 30522 + i,
                "content": f"[NEW{i}]",
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
        )
    path.write_text(json.dumps(tok), encoding="utf-8")
