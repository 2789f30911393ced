"""S3 access for drops, exports and tables: plain boto3, no dagster.

Credentials, region and endpoint come from the standard AWS environment
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
`AWS_ENDPOINT_URL` for S3-compatible stores; retries from `AWS_RETRY_MODE` and
`AWS_MAX_ATTEMPTS`). Every failure surfaces as an `S3Error` whose message is one line and
never contains the secret key.
"""

import os
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

SCHEME = "s3://"
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,61}[a-z0-9]\Z")
DEFAULT_MAX_ATTEMPTS = 5
DELETE_BATCH = 1000
CHUNK_BYTES = 1 << 20


class S3Error(Exception):
    """An S3 operation that failed; the message is one line, safe to print."""


class S3Url(NamedTuple):
    """`s3://bucket/prefix/`; `prefix` is empty or ends with '/'. Unpacks as (bucket, prefix)."""

    bucket: str
    prefix: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}"

    def key(self, relative: str) -> str:
        """The object key of `relative` under this prefix."""
        return self.prefix + relative.lstrip("/")

    def child(self, name: str) -> "S3Url":
        """The sub-prefix `<prefix><name>/`."""
        return S3Url(self.bucket, f"{self.prefix}{name.strip('/')}/")

    @property
    def name(self) -> str:
        """The last component of the prefix ('' for a bucket root)."""
        return self.prefix.rstrip("/").rsplit("/", 1)[-1]


class S3Object(NamedTuple):
    key: str
    size: int
    etag: str


def is_s3_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SCHEME)


def parse_s3_url(url: str) -> S3Url:
    """Splits `s3://bucket/some/prefix` into bucket and a prefix ending with '/' (or empty).
    Raises ValueError, with a one-line reason, for anything else."""
    if not is_s3_url(url):
        raise ValueError(f"{url!r} is not an s3:// URL")
    bucket, _, prefix = url[len(SCHEME) :].partition("/")
    if not BUCKET_NAME.match(bucket) or ".." in bucket:
        raise ValueError(f"{url!r}: {bucket!r} is not a valid bucket name")
    prefix = prefix.strip("/")
    if prefix:
        parts = prefix.split("/")
        if any(p in {"", ".", ".."} for p in parts):
            raise ValueError(f"{url!r}: the prefix may not contain empty, '.' or '..' parts")
        if any(ord(c) < 32 for c in prefix):
            raise ValueError(f"{url!r}: the prefix may not contain control characters")
        prefix += "/"
    return S3Url(bucket, prefix)


def client_from_env(*, max_attempts: int | None = None, **overrides: Any) -> Any:
    """A boto3 S3 client from the standard AWS environment, with standard-mode retries
    (throttling such as SlowDown, 5xx and connection errors, exponential backoff).
    `overrides` (endpoint_url, region_name, profile_name, aws_access_key_id, ...) replace
    what the environment says."""
    import boto3
    from botocore.config import Config

    attempts = max_attempts or int(os.environ.get("AWS_MAX_ATTEMPTS") or DEFAULT_MAX_ATTEMPTS)
    endpoint = overrides.pop("endpoint_url", None) or os.environ.get("AWS_ENDPOINT_URL") or None
    region = (
        overrides.pop("region_name", None)
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )
    config = Config(
        retries={
            "total_max_attempts": attempts,
            "mode": os.environ.get("AWS_RETRY_MODE") or "standard",
        },
        connect_timeout=5,
        read_timeout=60,
        s3={"addressing_style": "path"} if endpoint else {},
    )
    session = boto3.session.Session(profile_name=overrides.pop("profile_name", None))
    try:
        return session.client(
            "s3", endpoint_url=endpoint, region_name=region, config=config, **overrides
        )
    except (BotoCoreError, ValueError) as err:
        raise S3Error(f"cannot create an S3 client: {_one_line(str(err))}") from None


def describe_error(err: BaseException, where: str = "") -> S3Error:
    """Turns a botocore error into an S3Error with a one-line message that never contains the
    secret key. `where` (e.g. the s3:// URL) prefixes the message."""
    reason = _reason(err)
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if secret and len(secret) >= 4:
        reason = reason.replace(secret, "***")
    return S3Error(_one_line(f"{where}: {reason}" if where else reason))


@contextmanager
def s3_errors(where: str = "") -> Iterator[None]:
    """Re-raises botocore errors inside the block as one-line S3Errors (see describe_error)."""
    try:
        yield
    except (ClientError, BotoCoreError) as err:
        raise describe_error(err, where) from None


def _reason(err: BaseException) -> str:
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        code = str(error.get("Code") or "")
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = str(error.get("Message") or "").strip()
        known = {
            "InvalidAccessKeyId": "the access key is not known to the S3 endpoint "
            "(check AWS_ACCESS_KEY_ID)",
            "SignatureDoesNotMatch": "the secret key does not match the access key "
            "(check AWS_SECRET_ACCESS_KEY)",
            "InvalidToken": "the session token is invalid (check AWS_SESSION_TOKEN)",
            "ExpiredToken": "the session token has expired (check AWS_SESSION_TOKEN)",
            "NoSuchBucket": "the bucket does not exist",
            "NoSuchKey": "no such object",
            "SlowDown": "the endpoint kept throttling requests (SlowDown); try again later",
        }
        if code in known:
            return known[code]
        if code in {"AccessDenied", "403"} or status == 403:
            return "access denied (the credentials may not read or write this location)"
        if code in {"404", "NotFound"} or status == 404:
            return "not found"
        return f"{code or status}: {message}" if message else f"S3 error {code or status}"
    if isinstance(err, NoCredentialsError | PartialCredentialsError):
        return "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    if isinstance(err, EndpointConnectionError | ConnectTimeoutError):
        url = urlsplit(str(getattr(err, "kwargs", {}).get("endpoint_url", "")))
        where = f"{url.scheme}://{url.netloc}" if url.netloc else ""
        return f"cannot reach the S3 endpoint {where}".rstrip() + " (check AWS_ENDPOINT_URL)"
    if isinstance(err, ReadTimeoutError):
        return "the S3 endpoint did not answer in time"
    return str(err) or type(err).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())


def list_keys(client: Any, bucket: str, prefix: str = "") -> Iterator[S3Object]:
    """Every object under `prefix`, in key order, following continuation tokens."""
    with s3_errors(f"{SCHEME}{bucket}/{prefix}"):
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", ()):
                yield S3Object(item["Key"], int(item.get("Size", 0)), item.get("ETag", ""))


def list_child_prefixes(
    client: Any, bucket: str, prefix: str = "", *, start_after: str | None = None
) -> Iterator[str]:
    """The immediate sub-prefixes of `prefix` (full prefixes ending with '/'), following
    continuation tokens; with `start_after` (a key), only those sorting after it."""
    with s3_errors(f"{SCHEME}{bucket}/{prefix}"):
        extra = {"StartAfter": start_after} if start_after else {}
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/", **extra
        )
        for page in pages:
            for item in page.get("CommonPrefixes", ()):
                yield item["Prefix"]


def object_exists(client: Any, bucket: str, key: str) -> bool:
    """Whether `key` exists (a 404 is False; other failures raise S3Error)."""
    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as err:
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 404 or err.response.get("Error", {}).get("Code") in {"404", "NoSuchKey"}:
            return False
        raise describe_error(err, f"{SCHEME}{bucket}/{key}") from None
    except BotoCoreError as err:
        raise describe_error(err, f"{SCHEME}{bucket}/{key}") from None
    return True


def check_bucket(client: Any, bucket: str) -> None:
    """Raises S3Error when the bucket is missing or the credentials cannot list it (a LIST,
    not a HEAD: its error body says why, e.g. a wrong secret key)."""
    with s3_errors(f"{SCHEME}{bucket}/"):
        client.list_objects_v2(Bucket=bucket, MaxKeys=1)


def get_bytes(client: Any, bucket: str, key: str) -> bytes:
    with s3_errors(f"{SCHEME}{bucket}/{key}"):
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()


def put_bytes(
    client: Any, bucket: str, key: str, data: bytes, *, content_type: str | None = None
) -> None:
    extra = {"ContentType": content_type} if content_type else {}
    with s3_errors(f"{SCHEME}{bucket}/{key}"):
        client.put_object(Bucket=bucket, Key=key, Body=data, **extra)


_CONDITION_FAILED = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


def put_if_absent(client: Any, bucket: str, key: str, data: bytes) -> bool:
    """Creates `key` only if no object has that key (a conditional write, If-None-Match: *).
    Returns False when it already exists (or a concurrent conditional write won)."""
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except ClientError as err:
        if str(err.response.get("Error", {}).get("Code")) in _CONDITION_FAILED:
            return False
        raise describe_error(err, f"{SCHEME}{bucket}/{key}") from None
    except BotoCoreError as err:
        raise describe_error(err, f"{SCHEME}{bucket}/{key}") from None
    return True


def upload_file(
    client: Any, path: Path, bucket: str, key: str, *, content_type: str | None = None
) -> None:
    """Uploads a local file (multipart when large)."""
    extra = {"ExtraArgs": {"ContentType": content_type}} if content_type else {}
    with s3_errors(f"{SCHEME}{bucket}/{key}"):
        client.upload_file(str(path), bucket, key, **extra)


def download_file(client: Any, bucket: str, key: str, path: Path) -> int:
    """Streams one object into `path` (created or replaced); returns the bytes written."""
    written = 0
    with s3_errors(f"{SCHEME}{bucket}/{key}"):
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        try:
            with open(path, "wb") as fh:
                for chunk in body.iter_chunks(CHUNK_BYTES):
                    fh.write(chunk)
                    written += len(chunk)
        finally:
            body.close()
    return written


def delete_keys(client: Any, bucket: str, keys: Iterable[str]) -> int:
    """Deletes the keys in batches of 1000; returns how many were deleted."""
    batch: list[str] = []
    deleted = 0

    def flush() -> None:
        nonlocal deleted
        with s3_errors(f"{SCHEME}{bucket}/"):
            reply = client.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
        errors = reply.get("Errors") or []
        if errors:
            first = errors[0]
            raise S3Error(
                _one_line(
                    f"{SCHEME}{bucket}/{first.get('Key', '')}: cannot delete: "
                    f"{first.get('Code', '')} {first.get('Message', '')}"
                    + (f" ({len(errors) - 1} more)" if len(errors) > 1 else "")
                )
            )
        deleted += len(batch)
        batch.clear()

    for key in keys:
        batch.append(key)
        if len(batch) == DELETE_BATCH:
            flush()
    if batch:
        flush()
    return deleted


def safe_relative_path(key: str, prefix: str) -> PurePosixPath:
    """The path of `key` relative to `prefix`, or ValueError when it would escape a folder:
    absolute, '..' or '.' parts, empty parts, backslashes or control characters."""
    if not key.startswith(prefix):
        raise ValueError("not under the prefix")
    relative = key[len(prefix) :]
    if not relative:
        raise ValueError("empty name")
    if relative.startswith("/"):
        raise ValueError("absolute path")
    if "\\" in relative or any(ord(c) < 32 for c in relative):
        raise ValueError("backslash or control character in the name")
    parts = relative.split("/")
    if any(p in {"..", "."} for p in parts):
        raise ValueError("'..' or '.' path component")
    if any(p == "" for p in parts):
        raise ValueError("empty path component")
    return PurePosixPath(relative)


@dataclass
class DownloadReport:
    """What download_prefix wrote (relative paths) and which keys it refused, with why."""

    files: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    bytes: int = 0


def download_prefix(client: Any, bucket: str, prefix: str, dest_dir: Path) -> DownloadReport:
    """Downloads every object under `prefix` into `dest_dir`, keeping relative paths. Keys
    that would land outside `dest_dir` (see safe_relative_path) or collide with another key
    are refused and reported, never written. Folder markers (keys ending in '/') are skipped.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    root = dest_dir.resolve()
    report = DownloadReport()
    for obj in list_keys(client, bucket, prefix):
        if obj.key.endswith("/") and obj.size == 0:
            continue
        try:
            relative = safe_relative_path(obj.key, prefix)
        except ValueError as err:
            report.refused.append((obj.key, str(err)))
            continue
        target = root.joinpath(*relative.parts)
        if not target.resolve().is_relative_to(root):
            report.refused.append((obj.key, "outside the destination folder"))
            continue
        tmp = target.parent / f".part-{uuid.uuid4().hex[:8]}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                raise FileExistsError
            report.bytes += download_file(client, bucket, obj.key, tmp)
            os.replace(tmp, target)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            report.refused.append((obj.key, "collides with another key's path"))
            continue
        finally:
            if tmp.exists():
                tmp.unlink()
        report.files.append(str(relative))
    return report
