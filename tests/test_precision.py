import pytest
import torch

import crnn.reading.precision as precision


@pytest.mark.parametrize(("asked", "native", "expected"), [
    ("auto", True, "bf16"), ("auto", False, "fp32"), ("fp32", True, "fp32"), ("mixed", False, "mixed"), ("bf16", False, "bf16")])
def test_precision_auto_picks_bf16_only_with_native_bf16(monkeypatch: pytest.MonkeyPatch, asked: str,
                                                         native: bool, expected: str) -> None:
    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    assert precision.resolve_precision(asked, torch.device("cpu")) == expected


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.resolve_precision("fp8", torch.device("cpu"))


@pytest.mark.parametrize("device", ["cuda", "meta"])
def test_only_a_cpu_can_have_native_bf16(device: str) -> None:
    assert precision.native_bf16(torch.device(device)) is False
