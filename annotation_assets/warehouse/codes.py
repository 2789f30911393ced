"""Codes several stages and checks share: the label sources and the quarantine reasons the
warehouse stages add to ingest's own."""

SOURCES = ("rule", "model", "heavy", "human")
IMAGE_TEXT_SOURCE = "model_text"
# The sources whose labels come from the learned cascade, not rules or people: the small
# model's (model_labels) and with the heavy model's (heavy_labels).
SMALL_MODEL_SOURCES = ("model", IMAGE_TEXT_SOURCE)
MODEL_SOURCES = (*SMALL_MODEL_SOURCES, "heavy")
TEXT_TOO_LONG = "text_too_long"
EMPTY_TEXT = "empty_text"
DUPLICATE_ID = "duplicate_id"
