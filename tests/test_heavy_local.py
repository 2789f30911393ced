"""The heavy tier without a server: a local transformers folder in process (`heavy: {kind:
transformers, path: DIR}`), tested with tiny models built from a config (random weights)
that share the bundled MiniLM tokenizer."""

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from annotation_assets.core import llm
from annotation_assets.core.encoder import bundled_encoder_path
from annotation_assets.core.spec import HeavySettings, SpecError, parse_task_spec
from annotation_assets.home import Home
from resources.local_llm import LocalLabeler
from tests.conftest import BASE_SPEC, TOKENIZER_FILES
from tests.test_assets import Deployment, _metadata

LABELS = ["negative", "neutral", "positive"]


def _tokenizer(folder: Path) -> None:
    for name in TOKENIZER_FILES:
        shutil.copy(bundled_encoder_path() / name, folder / name)


@pytest.fixture(scope="module")
def causal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-causal")
    config = GPT2Config(vocab_size=30522, n_positions=256, n_embd=32, n_layer=1, n_head=2)
    GPT2LMHeadModel(config).save_pretrained(folder)
    _tokenizer(folder)
    return folder


@pytest.fixture(scope="module")
def nli_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-nli")
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
        id2label={0: "contradiction", 1: "neutral", 2: "entailment"},
        label2id={"contradiction": 0, "neutral": 1, "entailment": 2},
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    _tokenizer(folder)
    return folder


def _messages(text: str) -> list[dict[str, str]]:
    return llm.build_messages("Sentiment.", dict.fromkeys(LABELS, ""), [], text)


@pytest.mark.parametrize("which", ["causal_dir", "nli_dir"])
def test_a_local_model_always_answers_one_of_the_labels(
    which: str, request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue(which)
    settings = HeavySettings(kind="transformers", path=str(path))
    labeler = LocalLabeler(settings, LABELS, path)
    assert labeler.kind == ("nli" if which == "nli_dir" else "causal")
    first = labeler.ask(_messages("the box arrived crushed and nobody answers"))
    again = labeler.ask(_messages("the box arrived crushed and nobody answers"))
    assert first.status == llm.ANSWERED and first.label in LABELS
    assert 1 / 3 - 1e-9 <= first.confidence <= 1.0
    assert (again.label, again.confidence) == (first.label, first.confidence)
    assert labeler.version.startswith("transformers:")
    long_text = "word " * 2000  # longer than the model's positions: cut, not an error
    assert labeler.ask(_messages(long_text)).label in LABELS


def test_the_spec_needs_a_path_for_a_local_model() -> None:
    with pytest.raises(SpecError, match="heavy"):
        parse_task_spec(dict(BASE_SPEC, heavy={"kind": "transformers"}))
    with pytest.raises(SpecError, match="heavy.nli_template"):
        parse_task_spec(
            dict(BASE_SPEC, heavy={"kind": "transformers", "path": "x", "nli_template": "no"})
        )


def test_a_local_model_labels_a_drop_and_a_missing_folder_leaves_it_to_people(
    home: Home,
    tmp_path: Path,
    tasks_dir: Callable[..., Path],
    tiny_encoder_dir: Path,
    causal_dir: Path,
) -> None:
    from tests.conftest import review_records

    heavy = {"kind": "transformers", "path": str(causal_dir), "accept_unreviewed": True}
    d = Deployment(home, tasks_dir({"heavy": heavy}), tiny_encoder_dir)
    d.drop("d1", review_records(40))
    result = d.run("d1")
    assert result.success
    meta = _metadata(result, "heavy_labels")
    assert meta["records_sent"] > 0 and meta["invalid_answers"] == 0
    assert str(meta["heavy_model"]).startswith("causal model from")
    answered = d.sql("SELECT count(*) FROM reviews.heavy_labels WHERE heavy_label IS NOT NULL")
    assert answered[0][0] == meta["records_sent"]

    missing = {"kind": "transformers", "path": str(tmp_path / "nowhere")}
    other = Deployment(
        Home(tmp_path / "h2").create(), tasks_dir({"heavy": missing}), tiny_encoder_dir
    )
    other.drop("d1", review_records(40))
    result = other.run("d1")
    assert result.success
    assert "is not a folder" in str(_metadata(result, "heavy_labels")["heavy_model"])
    c = other.counts("d1")
    assert c["ingested"] == c["final_rows"] + c["hitl_pending"] + c["quarantined"] + c["duplicates"]
