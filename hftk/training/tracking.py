"""The recipe's trackers (`tracking: [tensorboard, mlflow, trackio, wandb]`): checked before any weights load, kept
on this machine unless the user's own settings point elsewhere, and given the recipe, the data sizes and the
final metrics beside what Trainer logs each step.

Trainer's `report_to` callbacks (transformers' integrations) log every step. hftk opens each tracker's run before
training and closes it after the final evaluation: transformers closes MLflow's and trackio's runs when training
ends, so the evaluation after it (the best checkpoint's, and test's) would start a second MLflow run, and its
trackio callback opens the latest run of the same name, which may be another folder's (every `hftk tune` study
has a trial-000).

Where each tracker writes, unless its own settings say otherwise:
- TensorBoard: OUTPUT/tracking/tensorboard (TENSORBOARD_LOGGING_DIR).
- MLflow: sqlite:///OUTPUT/tracking/mlflow.db (MLFLOW_TRACKING_URI): MLflow 3 refuses to create file stores.
- trackio: its own local store, TRACKIO_DIR or HF_HOME/trackio: trackio fixes that folder when it is imported, so
  one process (`hftk tune`) cannot point it at each run's folder.
- W&B: OUTPUT/tracking/wandb (WANDB_DIR), synced to wandb.ai unless WANDB_MODE=offline.
This module imports transformers' callbacks: `prepare` and `train` import it when they build a run, not before.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import netrc
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from transformers.integrations import TensorBoardCallback, TrackioCallback

from hftk.config.reading import dotted
from hftk.config.recipe import Recipe
from hftk.errors import HftkError
from hftk.files import TRACKING

logger = logging.getLogger("hftk")

# The extra that installs each tracker's package (its import name is the tracker's).
_EXTRAS = {"tensorboard": "tracking", "mlflow": "tracking", "trackio": "tracking", "wandb": "wandb"}


def check(recipe: Recipe) -> None:
    """Refuse a tracker that would fail once training runs: its package missing, or an online tracker without an
    account or network. One line for each such tracker.

    Raises:
        HftkError: naming the tracker and what to install or set.
    """
    problems = [f"tracking: {name} {p}" for name in recipe.tracking if (p := _problem(name, recipe)) is not None]
    if problems:
        raise HftkError("\n".join(problems))


def arguments(recipe: Recipe, output_dir: str | Path) -> dict[str, Any]:
    """What the trackers read from TrainingArguments: their names, and the run's name (the output folder's, unless
    the recipe's `training.run_name`)."""
    name = recipe.training.get("run_name") or Path(output_dir).resolve().name
    return {"report_to": recipe.tracking or "none", "run_name": name}


class Tracking:
    """What `tracked` yields: `summary(metrics)` hands it the run's final metrics (as metrics.json holds them)."""

    def __init__(self) -> None:
        self.final: dict[str, float] = {}

    def summary(self, metrics: dict[str, Any]) -> None:
        """Training's, validation's and test's numbers as `final/NAME` (an undefined metric is left out)."""
        self.final = {
            f"final/{name}": float(value)
            for section in ("train", "eval", "test")
            for name, value in (metrics.get(section) or {}).items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        }


@contextlib.contextmanager
def tracked(trainer: Any, recipe: Recipe, rows: dict[str, int], out: Path) -> Iterator[Tracking]:
    """Open a run in each of the recipe's trackers (on the main process: the others log nothing) with the recipe
    and the rows of each split as its parameters, and close them when the block ends: with the final metrics the
    block gave `Tracking.summary`, or as failed when it raised."""
    tracking = Tracking()
    if not recipe.tracking or trainer.args.process_index != 0:
        yield tracking
        return
    params = {f"recipe.{k}": v for k, v in dotted(recipe.model_dump(mode="json")).items()}
    params |= {f"rows.{split}": n for split, n in rows.items()}
    run = _Run(trainer.args.run_name, trainer.args.project, out / TRACKING, params)
    started: list[Any] = []
    failed = True
    try:
        for name in recipe.tracking:
            try:
                started.append(_TRACKERS[name](trainer, run))
            except Exception as e:  # a server that refuses, a store it cannot open: before training, in one line
                raise HftkError(f"tracking: {name} could not open its run: {_first_line(e)}") from None
        yield tracking
        failed = False
    finally:
        for tracker in reversed(started):
            try:
                tracker.finish(None if failed else tracking.final, trainer.state.global_step)
            except Exception as e:  # what a tracker fails to record after training must not cost the model
                logger.warning("hftk: tracking: %s did not close its run: %s", tracker.name, _first_line(e))


@dataclass
class _Run:
    """What every tracker is told about the run."""

    name: str
    project: str  # trackio's project, MLflow's experiment, W&B's project
    folder: Path  # OUTPUT/tracking
    params: dict[str, Any]  # recipe.KEY (dotted) and rows.SPLIT


class _TensorBoard:
    """transformers' callback writes each step's logs into OUTPUT/tracking/tensorboard; at the end, the run's
    parameters and final metrics there as HParams (one row per run in `tensorboard --logdir runs/`)."""

    name = "tensorboard"

    def __init__(self, trainer: Any, run: _Run) -> None:
        self.run = run
        self.callback = next(c for c in trainer.callback_handler.callbacks if isinstance(c, TensorBoardCallback))
        if self.callback.logging_dir is None:  # TENSORBOARD_LOGGING_DIR unset
            self.callback.logging_dir = str(run.folder / "tensorboard")

    def finish(self, final: dict[str, float] | None, step: int) -> None:
        if self.callback.tb_writer is not None:  # opened again by the evaluation after training
            self.callback.tb_writer.close()
        if final is None:
            return
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        shown = {k: v if isinstance(v, (int, float, str)) else json.dumps(v) for k, v in self.run.params.items()}
        with SummaryWriter(self.callback.logging_dir) as writer:
            for summary in hparams(shown, final):
                writer.file_writer.add_summary(summary, step)
            for key, value in final.items():  # the HParams table reads its metrics from scalars of these names
                writer.add_scalar(key, value, step)


class _MLflow:
    """A run in the experiment named by MLFLOW_EXPERIMENT_NAME or the project, in MLflow's store at
    MLFLOW_TRACKING_URI or else OUTPUT/tracking/mlflow.db; transformers' callback logs into it."""

    name = "mlflow"

    def __init__(self, trainer: Any, run: _Run) -> None:
        import mlflow

        self.mlflow = mlflow
        # hftk's own store is set for this run only (set_tracking_uri also exports MLFLOW_TRACKING_URI, which the
        # next run in this process, a tune trial, would take for the user's).
        self.own_store = not mlflow.is_tracking_uri_set()
        if self.own_store:
            run.folder.mkdir(parents=True, exist_ok=True)
            mlflow.set_tracking_uri(f"sqlite:///{(run.folder / 'mlflow.db').resolve()}")
        try:
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or run.project
            experiment = mlflow.get_experiment_by_name(name)
            if experiment is not None:
                experiment_id = experiment.experiment_id
            else:  # MLflow's default artifact folder is ./mlruns, wherever the command ran
                artifacts = (run.folder / "mlflow-artifacts").resolve().as_uri() if self.own_store else None
                experiment_id = mlflow.create_experiment(name, artifact_location=artifacts)
            mlflow.start_run(experiment_id=experiment_id, run_name=run.name, nested=mlflow.active_run() is not None)
            limit = mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
            mlflow.log_params({_mlflow_key(k): _text(v)[:limit] for k, v in run.params.items()})
        except BaseException:
            self._restore()
            raise

    def finish(self, final: dict[str, float] | None, step: int) -> None:
        try:
            if final is not None:
                self.mlflow.log_metrics(final, step=step)
            self.mlflow.end_run("FAILED" if final is None else "FINISHED")
        finally:
            self._restore()

    def _restore(self) -> None:
        if self.own_store:
            self.mlflow.set_tracking_uri(None)


class _TrackioLogs(TrackioCallback):
    """transformers' trackio logging, into the run hftk opened: its own setup opens the latest run of the same
    name, and its end of training closes the run before the final evaluation."""

    def setup(self, args: Any, state: Any, model: Any = None, **kwargs: Any) -> None:
        self._initialized = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        pass


class _Trackio:
    """A new run in trackio's project (its local store unless TRACKIO_SPACE_ID or TRACKIO_SERVER_URL says
    otherwise), the parameters as its config."""

    name = "trackio"

    def __init__(self, trainer: Any, run: _Run) -> None:
        import trackio

        self.trackio = trackio
        trackio.init(project=run.project, name=run.name, space_id=trainer.args.trackio_space_id, config=run.params)
        trainer.pop_callback(TrackioCallback)
        trainer.add_callback(_TrackioLogs())

    def finish(self, final: dict[str, float] | None, step: int) -> None:
        if final:
            self.trackio.log(
                {**final, "train/global_step": step}
            )  # the x-axis of transformers' logs, not trackio's count
        self.trackio.finish()


class _Wandb:
    """A W&B run in WANDB_PROJECT or the project, its files under OUTPUT/tracking (or WANDB_DIR), the parameters
    as its config and the final metrics as its summary."""

    name = "wandb"

    def __init__(self, trainer: Any, run: _Run) -> None:
        import wandb

        self.wandb = wandb
        folder = Path(os.environ.get("WANDB_DIR") or run.folder)
        folder.mkdir(parents=True, exist_ok=True)
        project = os.environ.get("WANDB_PROJECT") or run.project
        wandb.init(project=project, name=run.name, dir=str(folder), config=run.params)

    def finish(self, final: dict[str, float] | None, step: int) -> None:
        if final:
            self.wandb.run.summary.update(final)
        self.wandb.finish(exit_code=1 if final is None else 0)


_TRACKERS = {"tensorboard": _TensorBoard, "mlflow": _MLflow, "trackio": _Trackio, "wandb": _Wandb}


# ------------------------------------------------------------------------------------------------ checks


def _problem(name: str, recipe: Recipe) -> str | None:
    """What stops tracker `name` here, or None. The account and network first: installing the package would not
    make an offline machine log to a server."""
    online = {"mlflow": _mlflow_online, "trackio": _trackio_online, "wandb": _wandb_online}.get(name)
    if online is not None and (problem := online(recipe)) is not None:
        return problem
    if importlib.util.find_spec(name) is None:
        return f"needs the {name} package; pip install 'hftk[{_EXTRAS[name]}]'"
    return None


def _wandb_online(recipe: Recipe) -> str | None:
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return None
    url = os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai"
    if not (os.environ.get("WANDB_API_KEY") or _netrc_login(urlparse(url).hostname or "")):
        return (
            f"logs to {url} and no W&B account is set up here: set WANDB_API_KEY (or run `wandb login`), "
            "or WANDB_MODE=offline to keep the run on this machine"
        )
    return _unreachable(url, "set WANDB_MODE=offline to keep the run on this machine")


def _mlflow_online(recipe: Recipe) -> str | None:
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith(("http://", "https://")):
        return None
    return _unreachable(uri, "start the server, or unset MLFLOW_TRACKING_URI to log into OUTPUT/tracking/mlflow.db")


def _trackio_online(recipe: Recipe) -> str | None:
    space = recipe.training.get("trackio_space_id") or os.environ.get("TRACKIO_SPACE_ID")
    local = "to log on this machine"
    if space:
        import huggingface_hub

        if huggingface_hub.is_offline_mode() or not huggingface_hub.get_token():
            return (
                f"logs to the Hugging Face Space {space}, which needs a Hugging Face token (`hf auth login`) and "
                f"the network (HF_HUB_OFFLINE is {os.environ.get('HF_HUB_OFFLINE', 'unset')}); unset "
                f"TRACKIO_SPACE_ID and training.trackio_space_id {local}"
            )
        return _unreachable("https://huggingface.co", f"unset TRACKIO_SPACE_ID and training.trackio_space_id {local}")
    server = os.environ.get("TRACKIO_SERVER_URL")
    return _unreachable(server, f"unset TRACKIO_SERVER_URL {local}") if server else None


def _unreachable(url: str, fix: str) -> str | None:
    """'cannot reach URL (why); FIX' when a connection to the URL's host fails within 5 seconds, else None."""
    parts = urlparse(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=5).close()
    except OSError as e:
        return f"cannot reach {url} ({e.strerror or type(e).__name__}); {fix}"
    return None


def _netrc_login(host: str) -> bool:
    """Whether ~/.netrc (or NETRC) holds a login for `host`: where `wandb login` keeps the key."""
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


# ------------------------------------------------------------------------------------------------ helpers


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _mlflow_key(key: str) -> str:
    """A parameter name MLflow takes: a label in the key (`recipe.class_weights.ok?`) may hold other characters."""
    return re.sub(r"[^0-9A-Za-z_\-. :/]", "_", key)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
