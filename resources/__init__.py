"""Typed Dagster resources: the DuckDB warehouse and the label models."""

from resources.models import LabelModels
from resources.warehouse import Warehouse

__all__ = ["LabelModels", "Warehouse"]
