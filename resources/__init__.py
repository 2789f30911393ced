"""Typed Dagster resources: the DuckDB warehouse and the label models."""

from resources.models import LabelModels
from resources.s3 import S3Storage
from resources.warehouse import Warehouse

__all__ = ["LabelModels", "S3Storage", "Warehouse"]
