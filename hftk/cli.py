"""`hftk` command line: a thin layer over the library functions, which do the work."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import hftk
from hftk.config.reading import parse_overrides
from hftk.errors import HftkError
from hftk.inference.predict import AGGREGATIONS
from hftk.models.loading import is_main_process
from hftk.tasks.metrics import is_reason, shown
from hftk.testing.fixtures import FIXTURES, build_fixture
from hftk.training.check import format_report


class _Parser(argparse.ArgumentParser):
    """Usage errors as one `hftk: error:` line with exit status 2, like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"hftk: error: {message}; see '{self.prog} --help'", file=sys.stderr)
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hftk", description="Fine-tune HuggingFace models from one recipe file.")
    p.add_argument("--version", action="version", version=f"hftk {hftk.__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="fine-tune the model a recipe describes")
    t.add_argument("recipe", help="recipe YAML file (relative data paths start at its folder)")
    _set(t, "override a recipe field, e.g. --set training.learning_rate=3e-5 (repeatable)")
    t.add_argument("--output", help="output directory (default: the recipe's output_dir)")
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint in the output dir")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run in the output dir")
    t.add_argument("--no-cache", action="store_true", help="tokenise the data anew and keep no cache (data.cache)")
    t.add_argument("--folds", type=int, metavar="K", help="k-fold cross-validation of train: one model per fold")
    t.add_argument("--keep", choices=["all", "none"], help="with --folds: every fold's model (all, default) or scores")

    tu = sub.add_parser("tune", help="search the recipe's search: space with Optuna; keep the best model")
    tu.add_argument("recipe", help="recipe YAML file with a search: block")
    tu.add_argument(
        "--trials", type=int, help="trials in the study when done (default: every point of a grid of choices, else 10)"
    )
    _set(tu, "override a recipe field for every trial (repeatable)")
    tu.add_argument("--output", help="the study's folder (default: the recipe's output_dir)")
    tu.add_argument("--resume", action="store_true", help="continue the study in the output dir")
    tu.add_argument("--overwrite", action="store_true", help="replace a study or run in the output dir")
    tu.add_argument("--no-cache", action="store_true", help="tokenise the data anew and keep no cache (data.cache)")
    tu.add_argument("--no-prune", action="store_true", help="run every trial to the end (no median pruning)")
    tu.add_argument("--backend", choices=["optuna", "ray"], default="optuna", help="optuna (here) or ray (Ray Tune)")

    c = sub.add_parser("check", help="validate a recipe and its data without loading weights")
    c.add_argument("recipe", help="recipe YAML file (relative data paths start at its folder)")
    _set(c, "override a recipe field as train would, e.g. --set max_length=256 (repeatable)")
    c.add_argument("--json", action="store_true", help="print the report as one JSON object")
    c.add_argument("--no-cache", action="store_true", help="report the cache as off (data.cache: false)")

    pr = sub.add_parser("predict", help="predict a file of inputs with a trained model directory or any checkpoint")
    pr.add_argument("model_dir", help=_MODEL)
    pr.add_argument("--task", help=_TASK)
    _set(pr, "set a recipe field for prediction, e.g. --set data.columns.text=sentence (repeatable)")
    pr.add_argument("--input", required=True, help=_INPUT)
    pr.add_argument("--output", required=True, help="JSONL file to write, one row per input with its line, in order")
    pr.add_argument("--top-k", type=int, default=None, help="also list the k most likely labels (answers, tokens)")
    pr.add_argument("--labels", help="zero-shot-classification: candidate labels, comma-separated")
    pr.add_argument("--hypothesis-template", help="zero-shot-classification: e.g. 'This example is {}.'")
    pr.add_argument("--multi-label", action="store_true", default=None, help="zero-shot: labels scored independently")
    pr.add_argument(
        "--aggregation",
        choices=AGGREGATIONS,
        help="token classification: how tokens group into entities (default: the recipe's aggregation)",
    )
    pr.add_argument(
        "--windows",
        action="store_true",
        default=None,
        help="text classification of long inputs (long_inputs: windows): each window's label and score too",
    )
    _precision(pr)
    _trust(pr)

    em = sub.add_parser("embed", help="sentence embeddings of a file of inputs, as .npy or .parquet")
    em.add_argument("model_dir", help="any encoder: an hftk output directory, a checkpoint, a hub id or package:NAME")
    em.add_argument("--input", required=True, help=_INPUT)
    em.add_argument("--output", required=True, help=".npy (row i = input i) or .parquet (line, input, vector)")
    em.add_argument("--pooling", choices=["cls", "mean", "max"], help="default: the checkpoint's own, else mean")
    em.add_argument("--normalize", action="store_true", default=None, help="unit-length vectors")
    em.add_argument("--column", help="the input column of CSV/TSV/JSON(L) files (default: text)")
    _precision(em)
    _trust(em)

    e = sub.add_parser("evaluate", help="the task's metrics on a labelled file")
    e.add_argument("model_dir", help=_MODEL)
    e.add_argument("--data", required=True, help="labelled file in the format and columns the model trained on")
    e.add_argument("--task", help=_TASK)
    _set(e, "set a recipe field for evaluation, e.g. --set data.columns.label=gold (repeatable)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--report", metavar="FOLDER", help="write the evaluation report (report.html, report.json) there")
    _precision(e)
    _trust(e)

    ex = sub.add_parser("export", help="export a model to ONNX (onnxruntime), optionally int8-quantized")
    ex.add_argument("model_dir", help=_MODEL)
    ex.add_argument("--output", required=True, help="a new folder for the exported model")
    ex.add_argument("--overwrite", action="store_true", help="replace the model in a folder that holds one")
    ex.add_argument("--format", default="onnx", choices=["onnx"], help="the export format (default onnx)")
    ex.add_argument("--quantize", choices=["int8"], help="dynamic int8 quantization of the weights")
    ex.add_argument("--task", help=_TASK)
    ex.add_argument("--data", help="inputs to measure the export's agreement on (default: the recipe's validation)")
    _trust(ex)

    pu = sub.add_parser("push", help="upload an output (or exported) folder to the Hugging Face Hub")
    pu.add_argument("model_dir", help="an hftk output directory or an exported folder")
    pu.add_argument("repo_id", help="the Hub repository, e.g. your-name/sst2-minilm (created if missing)")
    pu.add_argument("--private", action="store_true", help="create the repository private")

    sv = sub.add_parser("serve", help="serve a model over HTTP JSON with dynamic batching (POST /predict)")
    sv.add_argument("model_dir", help=_MODEL)
    sv.add_argument("--task", help=_TASK)
    _set(sv, "set a recipe field for prediction, e.g. --set data.columns.text=sentence (repeatable)")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sv.add_argument("--api-key", help="ask every request for 'Authorization: Bearer KEY' (default: $HFTK_API_KEY)")
    _precision(sv)
    _trust(sv)
    for name, default, text in _SERVE_LIMITS:
        sv.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default, help=text)

    ts = sub.add_parser("tasks", help="the tasks hftk trains and predicts, with their data roles")
    ts.add_argument("name", nargs="?", help="one task: print an example recipe for it")

    fx = sub.add_parser(
        "fixture",
        help="write a tiny offline stand-in of a hub checkpoint (its files' layout, random weights) for offline runs",
    )
    fx.add_argument("kind", help="; ".join(f"{k}: {hub}" for k, (_, hub) in FIXTURES.items()))
    fx.add_argument("dir", help="a new (or empty) folder to write; then --set model=DIR in a recipe")

    ru = sub.add_parser("runs", help="a table of the runs under a folder: the settings that differ, main metric, time")
    ru.add_argument("folder", nargs="?", help="where the runs are, searched recursively (default: runs/)")
    ru.add_argument("--sort", metavar="METRIC", help="best first by an evaluation metric, e.g. accuracy or loss")
    ru.add_argument("--json", action="store_true", help="print a JSON list: one object per run, every column")
    ru.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        help="two runs (paths, or names as the table shows them): the settings that differ, every metric, B - A",
    )
    return p


_MODEL = "an hftk output directory, a local checkpoint, a hub id or package:NAME"
_TASK = (
    "the pipeline task (text-classification, token-classification, question-answering, fill-mask, text-generation, "
    "summarization, translation, zero-shot-classification, feature-extraction) or hftk task; read from an hftk "
    "output directory when not given"
)
_INPUT = "text file (one input per line, blank lines too), CSV, TSV, JSON(L) or Parquet"


_SERVE_LIMITS = [
    ("max_wait_ms", 5.0, "longest a request waits for others to batch with (default 5)"),
    ("max_batch", 512, "inputs predicted in one model call (default 512)"),
    ("max_queue", 2048, "inputs waiting at most; past it requests get 503 with Retry-After (default 2048)"),
    ("max_inputs", 256, "inputs in one request at most (default 256)"),
    ("max_input_chars", 20_000, "characters in one input at most, every text of it (default 20000)"),
    ("max_choices", 16, "choices of one multiple-choice input at most (default 16)"),
    ("max_body_bytes", 4_000_000, "request body size at most (default 4000000)"),
    ("request_timeout", 10.0, "seconds for a request's headers to arrive, and again its body (default 10)"),
]


def _set(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def _trust(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run Python code shipped with the model (auto_map); only for a model whose code you trust. A model "
        "folder's own files never switch this on",
    )


def _precision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp16", "fp32"],
        help="arithmetic of the forward pass (default: the recipe's, auto: bf16 on a CPU that computes it and on "
        "CUDA GPUs that have it, fp16 on other GPUs, else fp32)",
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except HftkError as e:
        for line in str(e).splitlines():
            print(f"hftk: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hftk: interrupted", file=sys.stderr)
        return 130


def train(args: argparse.Namespace) -> int:
    if args.folds is not None:
        return _folds(args)
    if args.keep is not None:
        raise HftkError(f"--keep {args.keep}: applies to cross-validation only; add --folds K")
    result = hftk.train(
        args.recipe,
        overrides=_recipe_overrides(args),
        output_dir=args.output,
        resume=args.resume,
        overwrite=args.overwrite,
    )
    if is_main_process():  # under torchrun every process returns here; one report is enough
        print(json.dumps(result.metrics.get("eval", result.metrics.get("train")), indent=2))
        print(f"model saved to {result.output_dir}")
        if (page := result.output_dir / "report" / "report.html").is_file():
            print(f"evaluation report: {page}")
    return 0


def _folds(args: argparse.Namespace) -> int:
    from hftk.runs.folds import cross_validate

    result = cross_validate(
        args.recipe,
        folds=args.folds,
        keep=args.keep or "all",
        overrides=_recipe_overrides(args),
        output_dir=args.output,
        resume=args.resume,
        overwrite=args.overwrite,
    )
    print(result.table())
    print(f"{result.folds}-fold cross-validation saved to {result.output_dir} (metrics.json, README.md)")
    return 0


def tune(args: argparse.Namespace) -> int:
    from hftk.runs.tune import tune as run

    result = run(
        args.recipe,
        trials=args.trials,
        overrides=_recipe_overrides(args),
        output_dir=args.output,
        resume=args.resume,
        overwrite=args.overwrite,
        prune=not args.no_prune,
        backend=args.backend,
    )
    print(result.table())
    shares = ", ".join(f"{k.rsplit('.', 1)[-1]} {v:.2f}" for k, v in result.importances.items())
    print(result.importance_note or f"parameter importances: {shares}")
    print(
        f"best {result.metric} {result.best_value:.4g} with {json.dumps(result.best_params)}\n"
        f"model: {result.best_dir}; recipe: {result.output_dir / 'best-recipe.yaml'}; "
        f"every trial: {result.output_dir / 'trials.csv'}, {result.output_dir / 'tune.png'}"
    )
    return 0


def check(args: argparse.Namespace) -> int:
    report = hftk.check(args.recipe, _recipe_overrides(args))
    print(json.dumps(report, ensure_ascii=False) if args.json else format_report(report))
    return 0


def predict(args: argparse.Namespace) -> int:
    _quiet_loading()
    start = time.perf_counter()
    options = {"top_k": args.top_k, "aggregation_strategy": args.aggregation, "windows": args.windows}
    n = hftk.predict(
        args.model_dir,
        args.input,
        args.output,
        task=args.task,
        recipe_overrides=_prediction_overrides(args),
        trust_remote_code=args.trust_remote_code,
        **{k: v for k, v in options.items() if v is not None},
    )
    print(f"{n} predictions written to {args.output} in {time.perf_counter() - start:.1f} s")
    return 0


def embed(args: argparse.Namespace) -> int:
    _quiet_loading()
    start = time.perf_counter()
    n = hftk.embed(
        args.model_dir,
        args.input,
        args.output,
        pooling=args.pooling,
        normalize=args.normalize,
        column=args.column,
        precision=args.precision,
        trust_remote_code=args.trust_remote_code,
    )
    print(f"{n} embeddings written to {args.output} in {time.perf_counter() - start:.1f} s")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    _quiet_loading()
    overrides = parse_overrides(args.overrides) | ({"precision": args.precision} if args.precision else {})
    metrics = hftk.evaluate(
        args.model_dir,
        args.data,
        task=args.task,
        recipe_overrides=overrides,
        trust_remote_code=args.trust_remote_code,
        report=args.report,
    )
    if args.json:
        print(json.dumps(metrics))
    else:
        for k, v in metrics.items():
            if not is_reason(k, v):  # an undefined metric prints as "undefined (why)"
                print(f"{k}: {shown(metrics, k)}")
    if args.report:
        print(f"report: {Path(args.report) / 'report.html'}", file=sys.stderr if args.json else sys.stdout)
    return 0


def export(args: argparse.Namespace) -> int:
    from hftk.inference.export import export as run

    _quiet_loading()
    info = run(
        args.model_dir,
        args.output,
        fmt=args.format,
        quantize=args.quantize,
        task=args.task,
        data=args.data,
        overwrite=args.overwrite,
        trust_remote_code=args.trust_remote_code,
    )
    agreement = info.get("agreement")
    same = f"; {agreement['same_answers']:.2%} of {agreement['inputs']} answers as the original" if agreement else ""
    print(f"exported to {args.output} (onnx, {info['precision']}) in {info['seconds']:.0f} s{same}")
    return 0


def push(args: argparse.Namespace) -> int:
    from hftk.inference.push import push as run

    print(f"pushed {args.model_dir} to {args.repo_id}: {run(args.model_dir, args.repo_id, private=args.private)}")
    return 0


def serve(args: argparse.Namespace) -> int:
    from hftk.inference.requests import Limits
    from hftk.inference.serve import serve as run

    _quiet_loading()
    limits = Limits(**{name: getattr(args, name) for name, _, _ in _SERVE_LIMITS})
    run(
        args.model_dir,
        task=args.task,
        host=args.host,
        port=args.port,
        limits=limits,
        recipe_overrides=_prediction_overrides(args),
        trust_remote_code=args.trust_remote_code,
        api_key=args.api_key,
    )
    return 0


def tasks(args: argparse.Namespace) -> int:
    from hftk.tasks import get_task, task_names

    if args.name:
        print(get_task(args.name, where="hftk tasks ").example_recipe(), end="")
        return 0
    for name in task_names():
        cls = get_task(name)
        roles = [*cls.input_roles, *(f"[{r}]" for r in cls.optional_roles), *cls.target_roles]
        pipelines = ", ".join(dict.fromkeys((cls.pipeline_task, *cls.pipeline_aliases)))
        use = "trains and predicts" if cls.trainable else "predicts only"
        print(f"{name:25} {use:19} roles: {', '.join(roles):32} pipeline: {pipelines}")
    print("\n`hftk tasks NAME` prints an example recipe; roles in [ ] are optional.")
    return 0


def fixture(args: argparse.Namespace) -> int:
    out = build_fixture(args.kind, args.dir)
    print(f"{args.kind} fixture ({FIXTURES[args.kind][1]} layout, random weights) written to {out}")
    return 0


def runs(args: argparse.Namespace) -> int:
    folder = args.folder or "runs"
    if args.compare:
        if args.sort:
            raise HftkError("--sort orders the table of runs; --compare shows two runs, drop one of them")
        comparison = hftk.compare_runs(*args.compare, folder=folder)
        print(json.dumps(comparison.record(), ensure_ascii=False) if args.json else comparison.table())
        return 0
    table = hftk.list_runs(folder, sort=args.sort)
    print(json.dumps(table.records(), ensure_ascii=False) if args.json else table.table())
    return 0


COMMANDS = {
    "train": train,
    "tune": tune,
    "check": check,
    "predict": predict,
    "embed": embed,
    "evaluate": evaluate,
    "export": export,
    "push": push,
    "serve": serve,
    "tasks": tasks,
    "fixture": fixture,
    "runs": runs,
}


def _recipe_overrides(args: argparse.Namespace) -> dict[str, object]:
    """--set pairs, and --no-cache as the recipe field it stands for."""
    return parse_overrides(args.overrides) | ({"data.cache": False} if args.no_cache else {})


def _prediction_overrides(args: argparse.Namespace) -> dict[str, object]:
    """--set pairs plus the flags that are recipe fields (precision; zero-shot's labels and template)."""
    overrides = parse_overrides(args.overrides)
    flags = {
        "precision": args.precision,
        "candidate_labels": getattr(args, "labels", None),  # predict's flags; serve takes --set for them
        "hypothesis_template": getattr(args, "hypothesis_template", None),
        "multi_label": getattr(args, "multi_label", None),
    }
    return overrides | {k: v for k, v in flags.items() if v is not None}


def _quiet_loading() -> None:
    """Inference commands print their results; weight-loading progress bars would only bury them."""
    from transformers.utils import logging

    logging.disable_progress_bar()


if __name__ == "__main__":
    sys.exit(main())
