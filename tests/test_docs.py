"""The documentation's relative links resolve: every Markdown link and image in README.md,
docs/*.md and bench/RESULTS.md names a file of the repository, and a `#anchor` names a heading
of its target, slugged as GitHub does (lowercase, punctuation removed, spaces to '-')."""

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), ROOT / "bench" / "RESULTS.md"])

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code spans blanked out (their
    brackets are not links and their `#` lines are not headings)."""
    lines, fence = [], ""
    for line in text.splitlines():
        opening = FENCE.match(line)
        if fence:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = ""
            continue
        if opening:
            fence = opening.group(1)
            continue
        lines.append(INLINE_CODE.sub("code", line))
    return lines


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: markup and punctuation dropped (letters, marks,
    digits, '_' and '-' stay), lowercase, each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").lower()
    kept = "".join(
        ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in {"L", "M", "N"}
    )
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file; a repeated slug gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(path: Path) -> list[str]:
    """The link targets of a Markdown file: inline links, images and reference definitions."""
    targets = []
    for line in prose_lines(path.read_text(encoding="utf-8")):
        targets += INLINE_LINK.findall(line)
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            targets.append(definition.group(1))
    return targets


def broken_links(path: Path, root: Path) -> list[str]:
    """One line per relative link of `path` that names no file under `root`, or a heading its
    target does not have. Links with a scheme (http, https, mailto...) are not checked."""
    problems = []
    for target in links(path):
        if not target or EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not resolved.is_relative_to(root.resolve()):
            problems.append(f"{target}: outside the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and unquote(anchor) not in anchors(resolved):
            problems.append(f"{target}: no heading #{anchor} in {resolved.name}")
        elif anchor and resolved.suffix != ".md":
            problems.append(f"{target}: an anchor into a file that is not Markdown")
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc: Path) -> None:
    problems = broken_links(doc, ROOT)
    assert not problems, "\n".join(problems)


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {
        (ROOT / unquote(t.partition("#")[0])).resolve() for t in links(ROOT / "README.md") if t
    }
    unlinked = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link: {', '.join(unlinked)}"


def test_a_missing_file_a_missing_heading_and_a_missing_image_are_reported(
    tmp_path: Path,
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## Rule types, v2\n", encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\n"
        "[ok](docs/page.md#rule-types-v2) [ok](#title) [web](https://example.com/x.md)\n"
        "[gone](docs/gone.md) [bad anchor](docs/page.md#rule-types) ![img](docs/images/x.png)\n"
        "`[not a link](nowhere.md)`\n\n```\n[not a link](nowhere.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links(readme, tmp_path) == [
        "docs/gone.md: no such file",
        "docs/page.md#rule-types: no heading #rule-types in page.md",
        "docs/images/x.png: no such file",
    ]


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Rule types", "rule-types"),
        ("1. Parquet tables", "1-parquet-tables"),
        ("When is a drop complete?", "when-is-a-drop-complete"),
        ("Refresh after editing `pyproject.toml`", "refresh-after-editing-pyprojecttoml"),
        ("Drops and datasets on S3", "drops-and-datasets-on-s3"),
        ("snake_case & dashes - kept", "snake_case--dashes---kept"),
    ],
)
def test_github_slug(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug
