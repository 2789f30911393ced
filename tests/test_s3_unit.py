"""Edge cases of annotation_assets.core.s3 against moto: pagination, retries, error messages,
and keys that would escape a download folder."""

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from moto import mock_aws

from annotation_assets.core import s3

BUCKET = "unit-bucket"
SECRET = "unit-secret-key-0123456789"


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unit-access-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        c = s3.client_from_env()
        c.create_bucket(Bucket=BUCKET)
        yield c


class _Raw:
    """A urllib3-like body for a canned HTTP response."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        yield self._body


def _error_response(status: int, code: str, message: str) -> AWSResponse:
    body = (
        f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
        f"<Message>{message}</Message><RequestId>1</RequestId></Error>"
    ).encode()
    return AWSResponse("https://s3.amazonaws.com/", status, {}, _Raw(body))


def _fail_first(client: Any, operation: str, times: int, status: int, code: str) -> list[int]:
    """Makes the next `times` requests of `operation` answer with an S3 error; returns a list
    that records every attempt."""
    attempts: list[int] = []

    def before_send(request: Any, **kwargs: Any) -> AWSResponse | None:
        attempts.append(1)
        if len(attempts) <= times:
            return _error_response(status, code, "Please reduce your request rate.")
        return None

    client.meta.events.register(f"before-send.s3.{operation}", before_send)
    return attempts


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://bucket/drops/d1/", ("bucket", "drops/d1/")),
        ("s3://bucket/drops/d1", ("bucket", "drops/d1/")),
        ("s3://bucket", ("bucket", "")),
        ("s3://bucket/", ("bucket", "")),
    ],
)
def test_parse_s3_url_normalises_the_prefix(url: str, expected: tuple[str, str]) -> None:
    assert tuple(s3.parse_s3_url(url)) == expected


@pytest.mark.parametrize(
    "url",
    ["/local/path", "s3://", "s3://B!/x", "s3://bucket/a/../b", "s3://bucket/a//b", "s3://a/x"],
)
def test_parse_s3_url_refuses_bad_urls(url: str) -> None:
    with pytest.raises(ValueError):
        s3.parse_s3_url(url)


def test_list_keys_follows_pagination_past_1000_keys(client: Any) -> None:
    keys = [f"drops/d1/part-{i:05d}.jsonl" for i in range(1205)]
    for key in keys:
        client.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    calls = []
    client.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: calls.append(1))

    listed = list(s3.list_keys(client, BUCKET, "drops/d1/"))

    assert [o.key for o in listed] == keys
    assert all(o.size == 1 and o.etag for o in listed)
    assert len(calls) == 2


def test_list_child_prefixes_follows_pagination(client: Any) -> None:
    for i in range(1003):
        client.put_object(Bucket=BUCKET, Key=f"drops/d{i:04d}/_SUCCESS", Body=b"")
    client.put_object(Bucket=BUCKET, Key="drops/loose-file.jsonl", Body=b"")

    children = list(s3.list_child_prefixes(client, BUCKET, "drops/"))

    assert children == [f"drops/d{i:04d}/" for i in range(1003)]


def test_throttling_is_retried_until_it_succeeds(client: Any) -> None:
    client.put_object(Bucket=BUCKET, Key="a/b.jsonl", Body=b"x")
    attempts = _fail_first(client, "ListObjectsV2", times=2, status=503, code="SlowDown")

    assert [o.key for o in s3.list_keys(client, BUCKET, "a/")] == ["a/b.jsonl"]
    assert len(attempts) == 3


def test_persistent_throttling_gives_up_with_a_one_line_message(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    throttled = s3.client_from_env()
    attempts = _fail_first(throttled, "GetObject", times=99, status=503, code="SlowDown")

    with pytest.raises(s3.S3Error) as err:
        s3.get_bytes(throttled, BUCKET, "a/b.jsonl")

    assert len(attempts) == 2
    assert str(err.value) == (
        f"s3://{BUCKET}/a/b.jsonl: the endpoint kept throttling requests (SlowDown); "
        "try again later"
    )


def test_access_denied_is_one_line_without_the_secret(client: Any) -> None:
    _fail_first(client, "PutObject", times=99, status=403, code="AccessDenied")

    with pytest.raises(s3.S3Error) as err:
        s3.put_bytes(client, BUCKET, "out/v1/manifest.json", b"{}")

    message = str(err.value)
    assert message.startswith(f"s3://{BUCKET}/out/v1/manifest.json: access denied")
    assert "\n" not in message and SECRET not in message


def test_missing_bucket_is_named(client: Any) -> None:
    with pytest.raises(s3.S3Error, match=r"^s3://no-such-bucket/x/: the bucket does not exist$"):
        list(s3.list_keys(client, "no-such-bucket", "x/"))


def test_secret_in_a_server_message_is_masked() -> None:
    err = ClientError(
        {"Error": {"Code": "Weird", "Message": f"bad\nrequest signed with {SECRET}"}}, "GetObject"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        message = str(s3.describe_error(err, "s3://b/k"))
    assert message == "s3://b/k: Weird: bad request signed with ***"


def test_missing_credentials_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")

    with pytest.raises(s3.S3Error) as err:
        list(s3.list_keys(s3.client_from_env(), "bucket", "drops/"))

    assert str(err.value) == (
        "s3://bucket/drops/: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )


def test_unreachable_endpoint_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")

    with pytest.raises(s3.S3Error) as err:
        s3.check_bucket(s3.client_from_env(), "bucket")

    assert str(err.value).startswith(f"s3://bucket/: cannot reach the S3 endpoint {endpoint}")


def test_download_prefix_refuses_keys_that_escape_the_folder(client: Any, tmp_path: Path) -> None:
    good = {"drops/d1/a.jsonl": b"a", "drops/d1/sub/b.csv": b"b"}
    bad = [
        "drops/d1/../../evil.jsonl",
        "drops/d1/sub/../../../evil2.jsonl",
        "drops/d1/./c.jsonl",
        "drops/d1//etc/passwd",
        "drops/d1/x\\..\\..\\evil3",
    ]
    for key, body in good.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
    for key in bad:
        client.put_object(Bucket=BUCKET, Key=key, Body=b"evil")
    dest = tmp_path / "stage" / "d1"

    report = s3.download_prefix(client, BUCKET, "drops/d1/", dest)

    assert sorted(report.files) == ["a.jsonl", "sub/b.csv"]
    assert sorted(k for k, _ in report.refused) == sorted(bad)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert written == [
        "stage",
        "stage/d1",
        "stage/d1/a.jsonl",
        "stage/d1/sub",
        "stage/d1/sub/b.csv",
    ]
    assert (dest / "sub" / "b.csv").read_bytes() == b"b"


def test_download_prefix_refuses_a_key_that_collides_with_a_folder(
    client: Any, tmp_path: Path
) -> None:
    client.put_object(Bucket=BUCKET, Key="d/a", Body=b"file")
    client.put_object(Bucket=BUCKET, Key="d/a/b", Body=b"nested")

    report = s3.download_prefix(client, BUCKET, "d/", tmp_path / "out")

    assert report.files == ["a"]
    assert report.refused == [("d/a/b", "collides with another key's path")]


def test_delete_keys_batches_past_1000(client: Any) -> None:
    keys = [f"tmp/{i}" for i in range(1500)]
    for key in keys:
        client.put_object(Bucket=BUCKET, Key=key, Body=b"")
    client.put_object(Bucket=BUCKET, Key="keep/me", Body=b"")

    assert s3.delete_keys(client, BUCKET, keys) == 1500
    assert [o.key for o in s3.list_keys(client, BUCKET)] == ["keep/me"]


def test_bytes_round_trip_and_existence(client: Any, tmp_path: Path) -> None:
    s3.put_bytes(client, BUCKET, "x/y.json", b'{"a": 1}', content_type="application/json")
    source = tmp_path / "f.bin"
    source.write_bytes(b"\x00\x01")
    s3.upload_file(client, source, BUCKET, "x/f.bin")

    assert s3.get_bytes(client, BUCKET, "x/y.json") == b'{"a": 1}'
    assert s3.get_bytes(client, BUCKET, "x/f.bin") == b"\x00\x01"
    assert s3.object_exists(client, BUCKET, "x/y.json")
    assert not s3.object_exists(client, BUCKET, "x/missing")


def test_staging_quarantines_keys_that_escape_the_drop(client: Any, tmp_path: Path) -> None:
    from annotation_assets.core.ingest import OUTSIDE_DROP, iter_raw_chunks
    from annotation_assets.core.staging import stage_s3_drop

    client.put_object(Bucket=BUCKET, Key="drops/d1/part-0.jsonl", Body=b'{"id": 1, "text": "a"}\n')
    client.put_object(Bucket=BUCKET, Key="drops/d1/../escape.jsonl", Body=b'{"id": 2}\n')
    task_drops = tmp_path / "home" / "drops" / "reviews"

    staged = stage_s3_drop(client, s3.parse_s3_url(f"s3://{BUCKET}/drops/d1/"), task_drops)

    assert staged.drop_id == "d1" and staged.files == 1
    assert staged.refused == [("drops/d1/../escape.jsonl", "'..' or '.' path component")]
    assert not (task_drops / "escape.jsonl").exists()
    assert sorted(p.name for p in task_drops.iterdir()) == ["d1"]
    [rows] = list(iter_raw_chunks(staged.path))
    assert rows["error"].tolist() == [None, OUTSIDE_DROP]
    assert rows["source_file"].tolist() == ["part-0.jsonl", "drops/d1/../escape.jsonl"]


def test_restaging_replaces_the_earlier_copy(client: Any, tmp_path: Path) -> None:
    from annotation_assets.core.staging import stage_s3_drop

    url = s3.parse_s3_url(f"s3://{BUCKET}/drops/d1/")
    client.put_object(Bucket=BUCKET, Key="drops/d1/old.jsonl", Body=b"{}\n")
    stage_s3_drop(client, url, tmp_path)
    client.delete_object(Bucket=BUCKET, Key="drops/d1/old.jsonl")
    client.put_object(Bucket=BUCKET, Key="drops/d1/new.jsonl", Body=b"{}\n")

    staged = stage_s3_drop(client, url, tmp_path)

    assert sorted(p.name for p in staged.path.iterdir()) == ["new.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d1"]


def _spec(**fields: Any) -> Any:
    from annotation_assets.core.spec import parse_task_spec

    base = {"name": "t", "kind": "text_classification", "labels": ["a", "b"]}
    return parse_task_spec({**base, **fields}, source="t.yaml")


def test_spec_source_and_sink_are_normalised() -> None:
    spec = _spec(source="s3://scrapes/reviews", sink="s3://datasets/reviews")
    assert (spec.source, spec.export_sink) == ("s3://scrapes/reviews/", "s3://datasets/reviews/")
    assert _spec(delivery={"sink": "exports/reviews"}).export_sink == "exports/reviews"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"source": "/data/drops"}, "t.yaml: source: '/data/drops': only s3:// prefixes"),
        ({"source": "s3://Bad_Bucket/x"}, "t.yaml: source: 's3://Bad_Bucket/x': 'Bad_Bucket'"),
        ({"sink": "s3://bucket/a/../b"}, "t.yaml: sink: 's3://bucket/a/../b': the prefix"),
        ({"sink": "gs://bucket/x"}, "t.yaml: sink: 'gs://bucket/x': only s3:// URLs"),
        (
            {"sink": "s3://bucket/x/", "delivery": {"sink": "s3://bucket/y/"}},
            "t.yaml: delivery.sink: differs from sink",
        ),
        ({"delivery": {"bucket": "x"}}, "t.yaml: delivery.bucket: Extra inputs"),
    ],
)
def test_spec_rejects_bad_locations_in_one_line(fields: dict[str, Any], message: str) -> None:
    from annotation_assets.core.spec import SpecError

    with pytest.raises(SpecError) as err:
        _spec(**fields)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_s3_resource_binds_set_variables_by_name_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import dagster as dg

    from resources import S3Storage

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unit-access-key")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)

    resource = S3Storage.from_env()

    assert isinstance(resource.aws_secret_access_key, dg.EnvVar)
    assert resource.aws_secret_access_key.env_var_name == "AWS_SECRET_ACCESS_KEY"
    assert resource.endpoint_url is None and resource.aws_session_token is None
    assert SECRET not in repr(resource)


def test_put_if_absent_creates_once(client: Any) -> None:
    assert s3.put_if_absent(client, BUCKET, "lock", b"first")
    assert not s3.put_if_absent(client, BUCKET, "lock", b"second")
    assert s3.get_bytes(client, BUCKET, "lock") == b"first"


def test_two_exports_racing_for_one_version_get_different_ones(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from annotation_assets.core import export

    url = s3.parse_s3_url(f"s3://{BUCKET}/labeled/")
    real = export.next_export_version
    seen: list[int] = []

    def stale_listing(c: Any, u: s3.S3Url) -> int:  # both exporters listed before either wrote
        version = 1 if not seen else real(c, u)
        seen.append(version)
        return version

    assert export.claim_export_version(client, url) == 1
    monkeypatch.setattr(export, "next_export_version", stale_listing)
    assert export.claim_export_version(client, url) == 2
    assert seen == [1, 2]
