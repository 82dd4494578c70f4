"""Zero-shot accuracy on SST-2 dev (labels positive/negative) from an NLI model trained by hftk.

Trains `recipes/sick-nli-minilm.yaml` (MiniLM on 3,927 English SICK pairs) unless --model names an NLI output
directory, then scores SST-2 dev with `hftk evaluate --task zero-shot-classification` for a few hypothesis
templates. The majority-class rate is printed beside it: the line zero-shot has to beat.

    python bench/zero_shot.py [--model runs/sick-nli-minilm]
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SST2_DEV = ROOT / "data/en/sst2/dev.tsv"
TEMPLATES = ["This example is {}.", "The sentiment of this review is {}.", "It was {}."]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="an hftk NLI output directory (default: train recipes/sick-nli-minilm.yaml)")
    args = ap.parse_args()
    import hftk

    if args.model:
        model = Path(args.model)
    else:
        result = hftk.train(ROOT / "recipes/sick-nli-minilm.yaml", overrides={"training.disable_tqdm": True})
        model = result.output_dir
        print(f"NLI model: SICK dev accuracy {result.metrics['eval']['eval_accuracy']:.4f}")
    from sklearn.metrics import roc_auc_score

    lines = SST2_DEV.read_text(encoding="utf-8").splitlines()[1:]
    texts, gold = [line.rsplit("\t", 1)[0] for line in lines], [line.rsplit("\t", 1)[1] for line in lines]
    majority = Counter(gold).most_common(1)[0][1] / len(gold)
    print(f"SST-2 dev: {len(gold)} sentences, majority class {majority:.4f}")
    for template in TEMPLATES:
        settings = {
            "candidate_labels": ["positive", "negative"],
            "hypothesis_template": template,
            "labels": {0: "negative", 1: "positive"},
            "data.columns.text": "sentence",
        }
        metrics = hftk.evaluate(model, SST2_DEV, task="zero-shot-classification", recipe_overrides=settings)
        # Ranking quality of the "positive" score, apart from where the argmax puts its threshold.
        predictor = hftk.Predictor(model, task="zero-shot-classification", **settings)
        out = predictor.predict(texts)
        positive = [o["scores"][o["labels"].index("positive")] for o in out]
        auc = roc_auc_score([g == "1" for g in gold], positive)
        share = sum(o["labels"][0] == "positive" for o in out) / len(out)
        print(f"zero-shot accuracy {metrics['accuracy']:.4f}  ROC AUC {auc:.4f}  'positive' {share:.1%}  {template!r}")


if __name__ == "__main__":
    main()
