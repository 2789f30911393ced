"""The sentence encoder's precision: how "auto" is resolved, and that bfloat16 autocast gives
vectors close to float32 under a name of its own."""

from pathlib import Path

import numpy as np
import pytest

from annotation_assets.core.encoder import (
    TextEncoder,
    bundled_encoder_path,
    cpu_has_native_bf16,
    resolve_precision,
)
from annotation_assets.core.spec import SpecError
from tests.conftest import make_spec

INTEL_FLAGS = "fpu vme sse sse2 avx2 avx512f avx512bw avx512vl"


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(
        f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\n"
        f"processor\t: 1\nflags\t\t: {flags}\n"
    )
    return path


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        (INTEL_FLAGS, False),
        (INTEL_FLAGS + " avx512_bf16 avx512_vnni", True),
        (INTEL_FLAGS + " amx_tile amx_bf16 amx_int8", True),
        # a flag that merely contains the name is not the flag
        (INTEL_FLAGS + " xavx512_bf16x", False),
    ],
)
def test_native_bf16_read_from_the_cpu_flags(tmp_path: Path, flags: str, native: bool) -> None:
    assert cpu_has_native_bf16(_cpuinfo(tmp_path, flags)) is native


def test_no_cpuinfo_means_no_native_bf16(tmp_path: Path) -> None:
    assert cpu_has_native_bf16(tmp_path / "absent") is False
    (tmp_path / "no_flags").write_text("processor\t: 0\nmodel name\t: Some ARM core\n")
    assert cpu_has_native_bf16(tmp_path / "no_flags") is False


def test_auto_precision_follows_the_cpu_and_explicit_values_win() -> None:
    assert resolve_precision("auto", native_bf16=True) == "bfloat16"
    assert resolve_precision("auto", native_bf16=False) == "float32"
    assert resolve_precision("float32", native_bf16=True) == "float32"
    assert resolve_precision("bfloat16", native_bf16=False) == "bfloat16"
    with pytest.raises(ValueError, match="encoder precision must be one of auto, float32"):
        resolve_precision("float16")


def test_spec_accepts_the_precisions_and_refuses_others() -> None:
    assert make_spec().model.encoder_precision == "auto"
    assert make_spec(model={"encoder_precision": "float32"}).model.encoder_precision == "float32"
    with pytest.raises(SpecError, match="model.encoder_precision: Input should be 'auto'"):
        make_spec(model={"encoder_precision": "int8"})


TEXTS = [
    "Arrived broken, the box was crushed and the glass cracked.",
    "Absolutely love it. Best kettle I have owned!",
    "ok",
    "The strap feels cheap but the watch itself keeps good time and the battery lasts weeks.",
    "I returned it for a refund after two days; it would not charge.",
]


def test_bfloat16_vectors_are_close_to_float32_and_named_apart() -> None:
    path = bundled_encoder_path()
    full = TextEncoder(path, precision="float32")
    half = TextEncoder(path, precision="bfloat16")
    assert full.precision == "float32" and half.precision == "bfloat16"
    assert half.name == full.name + "+bf16"  # cached vectors and heads never mix
    a, b = full.encode(TEXTS), half.encode(TEXTS)
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape == (len(TEXTS), full.dim)
    assert not np.array_equal(a, b)  # the autocast really ran
    cosine = (a * b).sum(axis=1)
    assert cosine.min() > 0.999, cosine
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    # the same batches give the same vectors again (cache and crash re-runs rely on it)
    np.testing.assert_array_equal(half.encode(TEXTS), b)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_the_label_models_resource_loads_the_specs_precision(
    tmp_path: Path, precision: str
) -> None:
    from resources.models import LabelModels

    spec = make_spec(model={"encoder_precision": precision})
    encoder = LabelModels(models_dir=str(tmp_path)).encoder_for(spec)
    assert encoder.precision == precision
    assert encoder.name.endswith("+bf16") == (precision == "bfloat16")
