import hashlib
import json
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from annotation_assets.core.encoder import bundled_encoder_path
from annotation_assets.core.spec import TaskSpec, parse_task_spec
from annotation_assets.home import Home
from tests.s3_server import S3Server, start_seaweedfs, stop_seaweedfs

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)

BASE_SPEC: dict[str, Any] = {
    "name": "reviews",
    "kind": "text_classification",
    "labels": ["negative", "neutral", "positive"],
    "fields": {"id": "id", "text": "text"},
    "rules": [
        {
            "name": "refund",
            "type": "regex",
            "pattern": r"(?i)\brefund\b",
            "label": "negative",
            "confidence": 0.95,
        },
        {
            "name": "praise",
            "type": "keywords",
            "words": ["love", "excellent"],
            "label": "positive",
            "confidence": 0.95,
        },
    ],
    "examples": {"neutral": ["it arrived on time", "it is ok I guess", "average product"]},
    "model": {"min_examples_per_label": 3},
}


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real transformers BERT encoder with random weights, small enough for fast tests,
    sharing the bundled MiniLM tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-encoder")
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(bundled_encoder_path() / name, folder / name)
    return folder


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home").create()


def make_spec(**overrides: Any) -> TaskSpec:
    data = json.loads(json.dumps(BASE_SPEC))
    data.update(overrides)
    return parse_task_spec(data)


@pytest.fixture
def tasks_dir(tmp_path: Path) -> Callable[..., Path]:
    """Writes task specs (BASE_SPEC with overrides) into a fresh tasks folder."""

    def write(*specs: dict[str, Any]) -> Path:
        folder = tmp_path / "tasks"
        folder.mkdir(exist_ok=True)
        for overrides in specs or ({},):
            data = json.loads(json.dumps(BASE_SPEC))
            data.update(overrides)
            (folder / f"{data['name']}.yaml").write_text(yaml.safe_dump(data))
        return folder

    return write


def write_jsonl(
    folder: Path, records: Iterable[dict[str, Any] | str], name: str = "part-0.jsonl"
) -> Path:
    """Writes records (dicts as JSON, strings verbatim) as a JSONL drop file plus _SUCCESS."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / name, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    (folder / "_SUCCESS").write_text("")
    return folder / name


REVIEW_TEXTS = [
    "I want a refund, it broke",
    "love it, works great",
    "<p>excellent <b>quality</b> &amp; fast</p>",
    "it is fine I guess",
    "arrived late, box dented",
    "would buy again",
    "meh",
]


def review_records(n: int, *, prefix: str = "r", offset: int = 0) -> list[dict[str, Any]]:
    """Short reviews made distinct (no exact or near duplicates) by random-looking tags."""
    records = []
    for i in range(offset, offset + n):
        tag = hashlib.sha1(str(i).encode()).hexdigest()
        text = f"{tag[:6]} {REVIEW_TEXTS[i % len(REVIEW_TEXTS)]} {tag[6:12]}"
        records.append({"id": f"{prefix}{i}", "text": text})
    return records


@dataclass
class S3Bucket:
    """A fresh bucket on the test S3 server; the AWS_* environment points at the server."""

    name: str
    server: S3Server
    client: Any

    def url(self, path: str = "") -> str:
        return f"s3://{self.name}/{path.lstrip('/')}"

    def put(self, key: str, data: bytes | str) -> None:
        body = data.encode() if isinstance(data, str) else data
        self.client.put_object(Bucket=self.name, Key=key, Body=body)

    def upload_folder(self, folder: Path, prefix: str) -> list[str]:
        """Uploads every file under `folder` to `<prefix><relative path>`; returns the keys."""
        keys = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            key = prefix + path.relative_to(folder).as_posix()
            self.client.upload_file(str(path), self.name, key)
            keys.append(key)
        return keys

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=prefix
        )
        return [o["Key"] for page in pages for o in page.get("Contents", ())]

    def get(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.name, Key=key)["Body"].read())


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS on loopback for the whole session, stopped with its process group."""
    server, proc = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        stop_seaweedfs(proc)


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    """A new, empty bucket; AWS_ENDPOINT_URL and the credentials are set for this test."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = s3_server.client()
    name = f"test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return S3Bucket(name, s3_server, client)
