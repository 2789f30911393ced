"""S3 (or an S3-compatible store) for drops and exports, on dagster-aws's S3Resource."""

import os
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource

from annotation_assets.core.s3 import client_from_env

ENV_FIELDS = {
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "aws_session_token": "AWS_SESSION_TOKEN",
    "endpoint_url": "AWS_ENDPOINT_URL",
    "region_name": "AWS_REGION",
}


class S3Storage(S3Resource):
    """S3 client for drops and exports. Credentials and endpoint come from the standard AWS
    environment, bound as dg.EnvVar so the UI shows variable names, never values; unset
    fields fall back to boto3's default chain. `client()` adds standard-mode retries and
    one-line errors (annotation_assets.core.s3)."""

    @classmethod
    def from_env(cls) -> "S3Storage":
        """A resource reading each AWS_* variable that is set (through dg.EnvVar); variables
        that are not set stay unset, so deployments without S3 or with instance roles work."""
        fields: dict[str, Any] = {
            name: dg.EnvVar(var) for name, var in ENV_FIELDS.items() if os.environ.get(var)
        }
        return cls(**fields)

    def get_object_to_set_on_execution_context(self) -> Any:
        """Assets and sensors receive this resource itself (S3Resource would hand them a bare
        boto3 client); call `client()` or `get_client()` on it."""
        return self

    def client(self) -> Any:
        overrides = {
            name: value
            for name in (*ENV_FIELDS, "profile_name")
            if (value := getattr(self, name, None))
        }
        return client_from_env(max_attempts=self.max_attempts, **overrides)
