"""Task specs: one YAML file per annotation task, validated on load."""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from annotation_assets.core.encoder import DEFAULT_BATCH_SIZE, Precision
from annotation_assets.core.s3 import is_s3_url, parse_s3_url

TASK_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
DROP_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}\Z")


class SpecError(ValueError):
    """A task spec that cannot be used; the message is one line naming file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _RuleBase(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=64)]
    label: str
    confidence: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    field: str = "text"


class RegexRule(_RuleBase):
    """Fires when the RE2 `pattern` matches the field (add `(?i)` for case-insensitive)."""

    type: Literal["regex"]
    pattern: Annotated[str, Field(min_length=1)]

    @field_validator("pattern")
    @classmethod
    def _compiles_in_re2(cls, value: str) -> str:
        try:  # compiled by the engine the rules stage matches with
            pc.match_substring_regex(pa.array([""], pa.string()), value)
        except pa.ArrowInvalid as err:
            reason = str(err).splitlines()[0].removeprefix("Invalid regular expression: ")
            raise ValueError(f"not a valid RE2 regular expression ({reason})") from None
        return value


class KeywordsRule(_RuleBase):
    """Fires when any of `words` occurs as a whole word, case-insensitively."""

    type: Literal["keywords"]
    words: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


class LexiconSentimentRule(_RuleBase):
    """Fires when the VADER compound score of the field lies in [min, max]."""

    type: Literal["lexicon_sentiment"]
    min: Annotated[float, Field(ge=-1.0, le=1.0)] = -1.0
    max: Annotated[float, Field(ge=-1.0, le=1.0)] = 1.0

    @model_validator(mode="after")
    def _band_is_ordered(self) -> "LexiconSentimentRule":
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


Rule = Annotated[RegexRule | KeywordsRule | LexiconSentimentRule, Field(discriminator="type")]


class Fields(_Strict):
    id: str = "id"
    text: str = "text"
    # JSON feeds wrapped in an object: the dotted path to the array of records
    records: str | None = None

    @field_validator("records")
    @classmethod
    def _dotted_path(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(not part for part in value.split("."))):
            raise ValueError(f"{value!r} must be member names joined by dots, e.g. data.results")
        return value

    @property
    def record_path(self) -> tuple[str, ...]:
        return tuple(self.records.split(".")) if self.records else ()


class Thresholds(_Strict):
    auto_accept: Annotated[float, Field(gt=0.0, le=1.0)] = 0.85
    review_budget: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5


def check_label_template(value: str) -> str:
    """Returns a prompt template that uses exactly the {label} placeholder, else raises
    ValueError."""
    try:
        filled = value.format(label="\x00")
    except (KeyError, IndexError, ValueError):
        raise ValueError(f"template {value!r} may only use the {{label}} placeholder") from None
    if "\x00" not in filled:
        raise ValueError(f"template {value!r} must contain {{label}}")
    return value


class ModelSettings(_Strict):
    encoder: str | None = None
    batch_size: Annotated[int, Field(ge=1, le=4096)] = DEFAULT_BATCH_SIZE
    max_length: Annotated[int, Field(ge=8, le=512)] = 256
    encoder_precision: Precision = "auto"
    min_examples_per_label: Annotated[int, Field(ge=1)] = 8
    rule_label_weight: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    zero_shot_temperature: Annotated[float, Field(gt=0.0)] = 0.05
    zero_shot_auto_accept: bool = False
    label_template: str = "A product review that is {label}."
    clip: str | None = None
    clip_templates: Annotated[list[str], Field(min_length=1)] = [
        "a photo of {label}.",
        "a product photo of {label}.",
    ]
    clip_batch_size: Annotated[int, Field(ge=1, le=1024)] = 32
    fast_tier: bool = True
    fast_tier_n_features: Annotated[int, Field(ge=1024, le=2**24)] = 2**18
    fast_tier_word_ngrams: tuple[int, int] = (1, 2)
    fast_tier_char_ngrams: tuple[int, int] | None = (3, 5)
    fast_tier_min_reviewed: Annotated[int, Field(ge=0)] = 30
    # fine-tuning the encoder on people's decisions (docs/model.md, "The tuned encoder")
    finetune: bool = True
    finetune_min_reviewed: Annotated[int, Field(ge=2)] = 200
    finetune_regrow: Annotated[float, Field(ge=0.0)] = 0.25
    finetune_holdout_share: Annotated[float, Field(ge=0.05, le=0.5)] = 0.2
    finetune_epochs: Annotated[int, Field(ge=1, le=50)] = 3
    finetune_learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 4e-5
    finetune_batch_size: Annotated[int, Field(ge=1, le=512)] = 16
    finetune_max_length: Annotated[int, Field(ge=8, le=512)] = 128
    finetune_seed: Annotated[int, Field(ge=0)] = 0
    finetune_max_seconds: Annotated[float, Field(gt=0.0)] = 900.0
    finetune_keep_versions: Annotated[int, Field(ge=0, le=100)] = 2

    @field_validator("fast_tier_word_ngrams", "fast_tier_char_ngrams")
    @classmethod
    def _ngram_range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 1 <= value[0] <= value[1] <= 6:
            raise ValueError(f"n-gram range {list(value)} must be [min, max], 1 <= min <= max <= 6")
        return value

    @field_validator("label_template")
    @classmethod
    def _has_label_slot(cls, value: str) -> str:
        return check_label_template(value)

    @field_validator("clip_templates")
    @classmethod
    def _templates_have_label_slot(cls, value: list[str]) -> list[str]:
        return [check_label_template(t) for t in value]


class HeavySettings(_Strict):
    """The heavy tier of a text task: a language model behind any OpenAI-compatible Chat
    Completions server (docs/heavy-models.md describes every field)."""

    kind: Literal["llm", "transformers"]
    model: Annotated[str, Field(min_length=1)] | None = None  # kind llm: the server's model
    path: str | None = None  # kind transformers: a local model folder
    nli_template: str = "This text is {label}."  # kind transformers, an NLI classifier
    base_url: str | None = None  # else OPENAI_BASE_URL
    max_records_per_drop: Annotated[int, Field(ge=0)] | None = None
    concurrency: Annotated[int, Field(ge=1, le=256)] = 4
    timeout_seconds: Annotated[float, Field(gt=0.0)] = 60.0
    max_retries: Annotated[int, Field(ge=0, le=20)] = 4
    structured_output: Literal["auto", "json_schema", "plain"] = "auto"
    logprobs: bool = True
    samples: Annotated[int, Field(ge=1, le=20)] = 1
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 0.0
    max_tokens: Annotated[int, Field(ge=1, le=4096)] = 32
    few_shot: Annotated[int, Field(ge=0, le=50)] = 4
    similar_examples: Annotated[int, Field(ge=0, le=50)] = 4
    min_reviewed: Annotated[int, Field(ge=0)] = 50
    accept_unreviewed: bool = False
    price_per_input_token: Annotated[float, Field(ge=0.0)] = 0.0
    price_per_output_token: Annotated[float, Field(ge=0.0)] = 0.0

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _kind_has_its_model(self) -> "HeavySettings":
        if self.kind == "llm" and not self.model:
            raise ValueError("model: give the server's model name (kind llm)")
        if self.kind == "transformers" and not self.path:
            raise ValueError("path: give a local model folder (kind transformers)")
        return self

    @field_validator("nli_template")
    @classmethod
    def _nli_label_slot(cls, value: str) -> str:
        return check_label_template(value)

    @model_validator(mode="after")
    def _samples_vary(self) -> "HeavySettings":
        if self.samples > 1 and self.temperature == 0:
            raise ValueError("samples > 1 needs temperature > 0 (identical answers agree)")
        return self


class ClassBalanceCheck(_Strict):
    max_ratio: Annotated[float, Field(ge=1.0)] = 20.0


class DriftCheck(_Strict):
    max_psi: Annotated[float, Field(gt=0.0)] = 0.25


class Checks(_Strict):
    class_balance: ClassBalanceCheck = ClassBalanceCheck()
    drift: DriftCheck = DriftCheck()


class ReviewSettings(_Strict):
    annotators_per_record: Annotated[int, Field(ge=1, le=20)] = 1
    min_agreement: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    adjudicators: list[str] = []
    min_kappa: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.6
    min_class_agreement: Annotated[float, Field(ge=0.0, le=1.0)] = 0.6
    latency_human_s: Annotated[float, Field(ge=0.0)] = 30.0
    calibrate_rules: bool = True
    rule_prior_strength: Annotated[float, Field(gt=0.0)] = 20.0


class Costs(_Strict):
    """Cost per record handled by each stage (any currency), for cost per labeled record."""

    rule: Annotated[float, Field(ge=0.0)] = 0.0
    model: Annotated[float, Field(ge=0.0)] = 0.0
    heavy: Annotated[float, Field(ge=0.0)] = 0.0
    human: Annotated[float, Field(ge=0.0)] = 0.0


class Balance(_Strict):
    """How `annotate export --balance` evens out classes (see docs/quality-report.md)."""

    mode: Literal["none", "downsample", "stratified"] = "none"
    max_ratio: Annotated[float, Field(ge=1.0)] = 1.0
    target: dict[str, Annotated[float, Field(ge=0.0)]] | None = None
    seed: int = 0


class ImageSettings(_Strict):
    """Image tasks: decoding limits, near-duplicate threshold, and the unknown class."""

    max_pixels: Annotated[int, Field(ge=1)] = 50_000_000
    phash_max_distance: Annotated[int, Field(ge=0, le=32)] = 6
    unknown_label: str | None = None
    unknown_below: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    unknown_route: Literal["review", "label"] = "review"


class Limits(_Strict):
    max_text_chars: Annotated[int, Field(ge=1)] = 20_000
    max_line_bytes: Annotated[int, Field(ge=1024)] = 1_000_000


class DropSettings(_Strict):
    settle_seconds: Annotated[float, Field(ge=0)] = 60.0


def check_location(value: str | None) -> str | None:
    """Returns an `s3://bucket/prefix/` URL (prefix normalised to end with '/') or a local
    path unchanged; raises ValueError for anything unusable."""
    if value is None:
        return None
    if is_s3_url(value):
        return str(parse_s3_url(value))
    if "://" in value:
        raise ValueError(f"{value!r}: only s3:// URLs and local paths are supported")
    if not value.strip() or "\x00" in value:
        raise ValueError(f"{value!r} is not a usable path")
    return value


class Delivery(_Strict):
    """The client's form of `sink`: `delivery: {sink: s3://bucket/prefix/}`."""

    sink: str | None = None

    @field_validator("sink")
    @classmethod
    def _sink_is_a_location(cls, value: str | None) -> str | None:
        return check_location(value)


class TaskSpec(_Strict):
    """One annotation task; docs/task-specs.md describes every field."""

    name: Annotated[str, Field(pattern=TASK_NAME.pattern, max_length=63)]
    kind: Literal["text_classification", "image_classification"]
    description: str = ""
    labels: dict[str, str]
    fields: Fields = Fields()
    rules: list[Rule] = []
    examples: dict[str, list[str]] = {}
    thresholds: Thresholds = Thresholds()
    model: ModelSettings = ModelSettings()
    checks: Checks = Checks()
    review: ReviewSettings = ReviewSettings()
    costs: Costs | None = None
    balance: Balance = Balance()
    images: ImageSettings = ImageSettings()
    limits: Limits = Limits()
    drops: DropSettings = DropSettings()
    source: str | None = None
    sink: str | None = None
    delivery: Delivery = Delivery()
    heavy: HeavySettings | None = None

    @field_validator("source")
    @classmethod
    def _source_is_s3(cls, value: str | None) -> str | None:
        if value is not None and not is_s3_url(value):
            raise ValueError(
                f"{value!r}: only s3:// prefixes are supported (local drops go in "
                "<home>/drops/<task>/)"
            )
        return check_location(value)

    @field_validator("sink")
    @classmethod
    def _sink_is_a_location(cls, value: str | None) -> str | None:
        return check_location(value)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_mapping(cls, value: Any) -> Any:
        if isinstance(value, list):
            if len(set(map(str, value))) != len(value):
                raise ValueError("labels must be unique")
            return {str(v): "" for v in value}
        if isinstance(value, dict):
            return {str(k): "" if v is None else str(v) for k, v in value.items()}
        return value

    @field_validator("labels")
    @classmethod
    def _at_least_two_labels(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) < 2:
            raise ValueError("give at least two labels")
        for label in value:
            if not label.strip():
                raise ValueError("labels must be non-empty strings")
        return value

    @model_validator(mode="after")
    def _labels_are_known(self) -> "TaskSpec":
        names = set()
        for i, rule in enumerate(self.rules):
            if rule.label not in self.labels:
                raise ValueError(f"rules[{i}].label: unknown label {rule.label!r}")
            if rule.name in names:
                raise ValueError(f"rules[{i}].name: {rule.name!r} is used twice")
            names.add(rule.name)
        for label in self.examples:
            if label not in self.labels:
                raise ValueError(f"examples.{label}: unknown label {label!r}")
        unknown = self.images.unknown_label
        if unknown is not None and unknown not in self.labels:
            raise ValueError(f"images.unknown_label: unknown label {unknown!r}")
        for label in self.balance.target or {}:
            if label not in self.labels:
                raise ValueError(f"balance.target.{label}: unknown label {label!r}")
        if self.heavy is not None and self.kind != "text_classification":
            raise ValueError("heavy: the LLM tier serves text tasks (image tasks use model.clip)")
        if self.sink and self.delivery.sink and self.sink != self.delivery.sink:
            raise ValueError("delivery.sink: differs from sink; give only one of them")
        return self

    @property
    def export_sink(self) -> str | None:
        """Where `annotate export` writes when no --out is given (`sink` or `delivery.sink`)."""
        return self.sink or self.delivery.sink

    @property
    def label_names(self) -> list[str]:
        return list(self.labels)

    @property
    def is_image(self) -> bool:
        return self.kind == "image_classification"


def _field_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif i == 2 and loc[0] == "rules" and item in {"regex", "keywords", "lexicon_sentiment"}:
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


SPEC_ERRORS_SHOWN = 3


def parse_task_spec(data: Any, *, source: str = "<spec>") -> TaskSpec:
    """Validates a parsed YAML document; raises SpecError naming the source and field."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: the spec must be a YAML mapping, got {type(data).__name__}")
    try:
        return TaskSpec.model_validate(data)
    except ValidationError as err:
        # Up to three problems on the one line: a misspelt key shows as the key it should be
        # ("Field required") and as the key it is ("Extra inputs are not permitted").
        errors = err.errors()
        shown = []
        for error in errors[:SPEC_ERRORS_SHOWN]:
            msg = str(error["msg"]).removeprefix("Value error, ")
            where = f"{_field_path(tuple(error['loc']))}: " if error["loc"] else ""
            shown.append(f"{where}{msg}")
        extra = (
            f" ({len(errors) - SPEC_ERRORS_SHOWN} more)" if len(errors) > SPEC_ERRORS_SHOWN else ""
        )
        raise SpecError(f"{source}: {'; '.join(shown)}{extra}") from None


def load_task_spec(path: Path) -> TaskSpec:
    """Reads and validates one task YAML file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(f"{path}: cannot read: {err}") from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise SpecError(f"{path}:{line}: {problem}") from None
    return parse_task_spec(data, source=str(path))


def load_task_specs(folder: Path) -> dict[str, TaskSpec]:
    """Every `*.yaml`/`*.yml` task in a folder, by name; the first bad file raises SpecError."""
    specs, problems = load_task_specs_isolated(folder)
    if problems:
        raise SpecError(problems[0].message)
    return specs


@dataclass(frozen=True)
class SpecProblem:
    """A task file that cannot be used: its one-line message (naming file and field) and the
    task name it gives, when that much can be read."""

    path: Path
    name: str | None
    message: str


def load_task_specs_isolated(folder: Path) -> tuple[dict[str, TaskSpec], list[SpecProblem]]:
    """Every valid `*.yaml`/`*.yml` task in a folder by name, and the problems of the others:
    one broken file takes only its own task out. Two files with one name are both refused
    (neither can be told to be the right one). A missing folder raises SpecError."""
    if not folder.is_dir():
        raise SpecError(f"{folder}: tasks folder does not exist")
    specs: dict[str, TaskSpec] = {}
    paths: dict[str, Path] = {}
    problems: list[SpecProblem] = []
    twice: set[str] = set()
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            spec = load_task_spec(path)
        except SpecError as err:
            problems.append(SpecProblem(path, _declared_name(path), str(err)))
            continue
        if spec.name in specs or spec.name in twice:
            first = paths.get(spec.name)
            problems.append(
                SpecProblem(
                    path,
                    spec.name,
                    f"{path}: name: task {spec.name!r} is defined twice"
                    + (f" (also in {first.name})" if first else ""),
                )
            )
            if first is not None:
                problems.append(
                    SpecProblem(
                        first,
                        spec.name,
                        f"{first}: name: task {spec.name!r} is defined twice (also in {path.name})",
                    )
                )
            specs.pop(spec.name, None)
            paths.pop(spec.name, None)
            twice.add(spec.name)
            continue
        specs[spec.name] = spec
        paths[spec.name] = path
    for problem in list(problems):
        # a broken file naming a loaded task may be its intended new version: neither loads
        if problem.name in specs:
            first = paths.pop(problem.name)
            del specs[problem.name]
            problems.append(
                SpecProblem(
                    first,
                    problem.name,
                    f"{first}: name: task {problem.name!r} is defined twice (also in"
                    f" {problem.path.name}, which is broken)",
                )
            )
    return specs, problems


def _declared_name(path: Path) -> str | None:
    """The `name` a task file gives, if it reads as YAML with a string name (else None)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def check_drop_id(drop_id: str) -> str:
    """Returns the drop id, or raises ValueError when it is outside [A-Za-z0-9._-]{1,128}."""
    if not DROP_ID.match(drop_id) or drop_id in {".", ".."}:
        raise ValueError(
            f"drop id {drop_id!r} is not allowed: use 1-128 characters from A-Z a-z 0-9 . _ -"
        )
    return drop_id
