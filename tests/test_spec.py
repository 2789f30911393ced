"""Task spec loading: defaults, label forms, and one-line errors naming file and field."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from annotation_assets.core.spec import (
    KeywordsRule,
    SpecError,
    check_drop_id,
    load_task_spec,
    load_task_specs,
    load_task_specs_isolated,
    parse_task_spec,
)

MINIMAL: dict[str, Any] = {
    "name": "t",
    "kind": "text_classification",
    "labels": ["negative", "positive"],
}


def _write(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


KEYWORDS_RULE: dict[str, Any] = {
    "name": "r",
    "type": "keywords",
    "words": ["bad"],
    "label": "negative",
}
LOOKBEHIND_RULE: dict[str, Any] = {
    "name": "r",
    "type": "regex",
    "pattern": r"(?<=not )bad",
    "label": "negative",
}
REVERSED_BAND_RULE: dict[str, Any] = {
    "name": "r",
    "type": "lexicon_sentiment",
    "min": 0.5,
    "max": 0.1,
    "label": "negative",
}


def _rule(**fields: Any) -> dict[str, Any]:
    return {**KEYWORDS_RULE, **fields}


def _spec_error(path: Path) -> str:
    with pytest.raises(SpecError) as info:
        load_task_spec(path)
    return str(info.value)


def test_minimal_spec_loads_with_defaults(tmp_path: Path) -> None:
    spec = load_task_spec(_write(tmp_path / "t.yaml", MINIMAL))

    assert spec.name == "t"
    assert spec.thresholds.auto_accept == 0.85
    assert spec.fields.id == "id" and spec.fields.text == "text"
    assert spec.rules == [] and spec.examples == {}


def test_labels_as_list_keep_their_order_with_empty_descriptions() -> None:
    spec = parse_task_spec({**MINIMAL, "labels": ["neutral", "negative", "positive"]})

    assert spec.label_names == ["neutral", "negative", "positive"]
    assert spec.labels == {"neutral": "", "negative": "", "positive": ""}


def test_labels_as_mapping_keep_their_descriptions() -> None:
    spec = parse_task_spec(
        {**MINIMAL, "labels": {"negative": "the buyer is unhappy", "positive": None}}
    )

    assert spec.labels == {"negative": "the buyer is unhappy", "positive": ""}


def test_rules_are_parsed_into_typed_rules() -> None:
    spec = parse_task_spec({**MINIMAL, "rules": [_rule(words=["awful", "broken"])]})

    assert isinstance(spec.rules[0], KeywordsRule)
    assert spec.rules[0].words == ["awful", "broken"]


MALFORMED: dict[str, tuple[dict[str, Any], str]] = {
    "bad_name": ({**MINIMAL, "name": "Bad-Name"}, "name"),
    "unknown_kind": ({**MINIMAL, "kind": "audio_classification"}, "kind"),
    "one_label": ({**MINIMAL, "labels": ["only"]}, "labels"),
    "duplicate_labels": ({**MINIMAL, "labels": ["a", "b", "a"]}, "labels"),
    "unknown_rule_type": ({**MINIMAL, "rules": [_rule(type="magic")]}, "rules[0]"),
    "rule_unknown_label": ({**MINIMAL, "rules": [_rule(label="angry")]}, "rules[0].label"),
    "duplicate_rule_names": (
        {**MINIMAL, "rules": [_rule(), _rule(words=["good"], label="positive")]},
        "rules[1].name",
    ),
    "regex_not_re2": ({**MINIMAL, "rules": [LOOKBEHIND_RULE]}, "rules[0].pattern"),
    "keywords_empty": ({**MINIMAL, "rules": [_rule(words=[])]}, "rules[0].words"),
    "lexicon_band_reversed": ({**MINIMAL, "rules": [REVERSED_BAND_RULE]}, "rules[0]"),
    "auto_accept_above_one": (
        {**MINIMAL, "thresholds": {"auto_accept": 1.5}},
        "thresholds.auto_accept",
    ),
    "unknown_top_level_field": ({**MINIMAL, "colour": "red"}, "colour"),
    "examples_unknown_label": ({**MINIMAL, "examples": {"angry": ["grr"]}}, "examples.angry"),
    "record_path_empty_part": (
        {**MINIMAL, "fields": {"records": "data..results"}},
        "fields.records",
    ),
    "finetune_seed_negative": ({**MINIMAL, "model": {"finetune_seed": -1}}, "model.finetune_seed"),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_spec_gives_one_line_error_naming_file_and_field(
    tmp_path: Path, case: str
) -> None:
    data, field_path = MALFORMED[case]
    path = _write(tmp_path / "t.yaml", data)

    message = _spec_error(path)

    assert message.startswith(f"{path}: {field_path}: ")
    assert "\n" not in message


def test_a_misspelt_rule_key_shows_both_the_missing_and_the_unknown_key(tmp_path: Path) -> None:
    rule = {"name": "r", "type": "regex", "patern": "x", "label": "positive", "confidence": 0.9}
    path = _write(tmp_path / "t.yaml", {**MINIMAL, "rules": [rule]})

    message = _spec_error(path)

    assert "rules[0].pattern: Field required" in message
    assert "rules[0].patern: Extra inputs are not permitted" in message
    assert "\n" not in message


def test_regex_error_says_why_re2_refused_it(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.yaml", {**MINIMAL, "rules": [LOOKBEHIND_RULE]})

    message = _spec_error(path)

    assert "not a valid RE2 regular expression (invalid perl operator: (?<" in message


def test_lexicon_band_error_names_both_bounds(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.yaml", {**MINIMAL, "rules": [REVERSED_BAND_RULE]})

    assert "min (0.5) is above max (0.1)" in _spec_error(path)


def test_label_named_like_a_rule_type_keeps_its_place_in_the_field_path() -> None:
    data = {**MINIMAL, "labels": ["regex", "keywords"], "examples": {"regex": [1]}}

    with pytest.raises(SpecError, match=r"^t\.yaml: examples\.regex\[0\]: "):
        parse_task_spec(data, source="t.yaml")


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("name: t\nkind: text_classification\n  labels: [a, b]\n", encoding="utf-8")

    message = _spec_error(path)

    assert message == f"{path}: line 3: mapping values are not allowed here"
    assert "\n" not in message


def test_yaml_list_instead_of_mapping_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.yaml", ["name", "kind"])

    assert _spec_error(path) == f"{path}: the spec must be a YAML mapping, got list"


def test_non_utf8_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_bytes(b"name: t\ndescription: caf\xe9\n")

    message = _spec_error(path)

    assert message.startswith(f"{path}: cannot read: ")
    assert "\n" not in message


def test_load_task_specs_reads_every_yaml_and_yml_by_name(tmp_path: Path) -> None:
    _write(tmp_path / "one.yaml", {**MINIMAL, "name": "one"})
    _write(tmp_path / "two.yml", {**MINIMAL, "name": "two"})
    (tmp_path / "notes.txt").write_text("not a spec")

    assert sorted(load_task_specs(tmp_path)) == ["one", "two"]


def test_load_task_specs_refuses_a_task_name_defined_twice(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", {**MINIMAL, "name": "same"})
    _write(tmp_path / "b.yaml", {**MINIMAL, "name": "same"})

    with pytest.raises(SpecError, match=r"b\.yaml: name: task 'same' is defined twice"):
        load_task_specs(tmp_path)


def test_load_task_specs_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="tasks folder does not exist"):
        load_task_specs(tmp_path / "missing")


@pytest.mark.parametrize("drop_id", ["2026-11-01", "a.b_c-1", "x" * 128])
def test_check_drop_id_accepts_allowed_ids(drop_id: str) -> None:
    assert check_drop_id(drop_id) == drop_id


@pytest.mark.parametrize(
    "drop_id",
    ["bad name", "..", ".", "a/b", "x" * 129, "", "2026-11-01\n"],
    ids=["space", "dotdot", "dot", "slash", "129_chars", "empty", "trailing_newline"],
)
def test_check_drop_id_refuses_other_ids(drop_id: str) -> None:
    with pytest.raises(ValueError, match="is not allowed"):
        check_drop_id(drop_id)


def test_a_broken_file_takes_out_only_its_own_task(tmp_path: Path) -> None:
    _write(tmp_path / "good.yaml", {**MINIMAL, "name": "good"})
    _write(tmp_path / "bad.yaml", {**MINIMAL, "name": "bad", "thresholds": {"auto_accept": 3}})
    (tmp_path / "junk.yml").write_text("name: [unclosed\n")
    _write(tmp_path / "twice_a.yaml", {**MINIMAL, "name": "twice"})
    _write(tmp_path / "twice_b.yaml", {**MINIMAL, "name": "twice"})
    specs, problems = load_task_specs_isolated(tmp_path)
    assert sorted(specs) == ["good"]
    by_file = {p.path.name: p for p in problems}
    assert sorted(by_file) == ["bad.yaml", "junk.yml", "twice_a.yaml", "twice_b.yaml"]
    assert by_file["bad.yaml"].name == "bad"
    assert "thresholds.auto_accept" in by_file["bad.yaml"].message
    assert by_file["junk.yml"].name is None
    assert "defined twice (also in twice_b.yaml)" in by_file["twice_a.yaml"].message
    assert all("\n" not in p.message for p in problems)
    # a broken file naming a valid task takes that name out too (it may be its new version)
    _write(tmp_path / "zz_good_again.yaml", {**MINIMAL, "name": "good", "kind": "nope"})
    specs, problems = load_task_specs_isolated(tmp_path)
    assert specs == {}
    assert any("good.yaml: name" in p.message and "broken" in p.message for p in problems)
    # the strict loader still refuses the folder with the first problem
    with pytest.raises(SpecError):
        load_task_specs(tmp_path)
