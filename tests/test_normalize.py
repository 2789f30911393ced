from __future__ import annotations

import re
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from annotation_assets.core.normalize import (
    _without_hidden,
    dedup_key,
    html_to_text,
    normalize_text,
    normalize_texts,
)

_MARKUP_FRAGMENTS = st.sampled_from(
    [
        "<",
        ">",
        "&",
        ";",
        "amp;",
        "lt;",
        "gt;",
        "#60;",
        "b",
        "p",
        "/",
        "!--",
        "-->",
        "script",
        "＜",
        "＆",
        "ﬁ",
        "e",
        "\u0301",
        "\u1100",
        "\u1161",
        "\x00",
        "\u200b",
        "\ufeff",
        " ",
        "\t",
        "\n",
        "\xa0",
        "3",
    ]
)
_TEXTS = st.one_of(st.text(), st.lists(_MARKUP_FRAGMENTS, max_size=30).map("".join))


def test_script_and_style_blocks_are_dropped_with_their_contents() -> None:
    raw = "<style>p { color: red }</style>Great<script>alert('x < y')</script> kettle"
    assert normalize_text(raw) == "Great kettle"


def test_comments_noscript_and_template_blocks_are_dropped() -> None:
    raw = "<!-- tracking --><noscript>enable js</noscript><template><p>row</p></template>Hello"
    assert normalize_text(raw) == "Hello"


def test_block_tags_separate_words() -> None:
    assert normalize_text("<p>first</p><p>second</p>line<br>break<li>item</li>") == (
        "first second line break item"
    )


def test_html_to_text_keeps_block_boundaries_as_newlines() -> None:
    assert html_to_text("<div>a</div><div>b</div>").split() == ["a", "b"]
    assert "\n" in html_to_text("a<br/>b")


def test_inline_tags_are_removed_without_splitting_words() -> None:
    assert normalize_text('un<b>believ</b>able <a href="/x?a=1&amp;b=2">link</a>') == (
        "unbelievable link"
    )


def test_entities_are_unescaped() -> None:
    assert normalize_text("Tom &amp; Jerry&#39;s&nbsp;show &#x263A;") == "Tom & Jerry's show ☺"


def test_heart_emoticon_survives() -> None:
    assert normalize_text("<3 love it") == "<3 love it"


def test_less_than_comparison_survives() -> None:
    assert normalize_text("3 < 5 and 7 > 2") == "3 < 5 and 7 > 2"


def test_less_than_survives_next_to_real_markup() -> None:
    assert normalize_text("<b>3 < 5</b> <3") == "3 < 5 <3"


def test_nfkc_folds_full_width_letters_and_ligatures() -> None:
    assert normalize_text("ＡＢＣ ｆｕｌｌ ﬁne") == "ABC full fine"


def test_nul_and_zero_width_characters_are_removed() -> None:
    assert normalize_text("nu\x00ll zero\u200bwidth\u200c\u200d\ufeff") == "null zerowidth"


def test_tabs_and_newlines_become_spaces_and_runs_collapse() -> None:
    assert normalize_text("  one\ttwo\r\n\nthree \xa0 four\u3000five  ") == (
        "one two three four five"
    )


def test_escaped_markup_is_stripped_once_unescaped() -> None:
    assert normalize_text("&lt;b&gt;bold&lt;/b&gt;") == "bold"


def test_full_width_markup_is_stripped_after_nfkc() -> None:
    assert normalize_text("＜b＞bold＜/b＞") == "bold"


def test_normalize_texts_matches_normalize_text() -> None:
    texts = ["<p>a</p>", "  b  ", "ﬁ"]
    assert normalize_texts(texts) == [normalize_text(t) for t in texts]


def test_dedup_key_ignores_case_and_whitespace() -> None:
    assert dedup_key("Great  Kettle") == dedup_key("great kettle")


def test_dedup_key_differs_for_different_texts() -> None:
    assert dedup_key("great kettle") != dedup_key("great kettles")


def test_dedup_key_is_128_bit_hex() -> None:
    key = dedup_key("great kettle")
    assert len(key) == 32
    int(key, 16)


@given(_TEXTS)
def test_normalize_text_is_idempotent(raw: str) -> None:
    once = normalize_text(raw)
    assert normalize_text(once) == once


@given(_TEXTS)
def test_normalize_text_has_no_outer_whitespace_or_control_characters(raw: str) -> None:
    text = normalize_text(raw)
    assert text == text.strip()
    assert not any(unicodedata.category(ch) == "Cc" for ch in text)


# Any code point at all, lone surrogates and NUL included (as JSON escapes can produce).
_ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=60) | _TEXTS


@given(_ANY_TEXT)
def test_normalize_text_of_any_code_points_is_storable_clean_and_stable(raw: str) -> None:
    text = normalize_text(raw)
    text.encode("utf-8")
    assert not any(ch in text for ch in "\x00\u200b\u200c\u200d\ufeff")
    assert not any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text)
    assert normalize_text(text) == text
    assert dedup_key(text) == dedup_key(normalize_text(text))


# What _without_hidden removes, as one regular expression (which searches again from every
# opener that never closes: quadratic on a line of them).
_HIDDEN_DEFINITION = re.compile(
    r"<!--.*?-->|<(script|style|noscript|template)\b[^>]*>.*?(?:</\1\s*>|\Z)",
    re.IGNORECASE | re.DOTALL,
)
_HIDDEN_FRAGMENTS = st.sampled_from(
    ["<!--", "-->", "<!-->", "-", ">", "<", "a", " ", "\n", "x>", "<b>", "<scripts"]
    # letters that case-insensitive matching equates with s, i and k
    + ["<\u017fcript", "<scr\u0130pt", "<scr\u0131pt", "</\u017ftyle>", "<noſcript", "\u212a"]
    + [f"<{n}" for n in ("script", "SCRIPT", "Style", "noscript", "template")]
    + [f"</{n}{s}>" for n in ("script", "STYLE", "noscript", "template") for s in ("", " ", "\n")]
)


@given(st.lists(_HIDDEN_FRAGMENTS, max_size=16).map("".join))
@settings(max_examples=2000)
def test_hidden_content_is_what_the_regular_expression_defines(raw: str) -> None:
    assert _without_hidden(raw) == _HIDDEN_DEFINITION.sub(" ", raw)


def test_openers_that_never_close_are_scanned_once() -> None:
    # A million characters of each: the regular expression above takes minutes to hours.
    for opener in ("<!--", "<!---", "<style", "<script a=", "&lt;!--", "<!-- great product "):
        raw = opener * (1_000_000 // len(opener))
        assert _without_hidden(raw) == raw
        assert normalize_text(raw) == normalize_text(normalize_text(raw))
    closed = "<!-- a --> b " * 50_000 + "<!--"
    assert normalize_text(closed) == " ".join(["b"] * 50_000) + " <!--"


def test_letters_that_match_s_and_i_case_insensitively_open_but_do_not_close_elements() -> None:
    # "ſ" (long s) and "İ"/"ı" match s and i without case; lowering them does not give the
    # tag name back. They open an element; its closing tag must be spelt as the opener was.
    assert normalize_text("keep <\u017fcript>hidden</script> gone") == "keep"
    assert normalize_text("keep <scr\u0130pt>hidden") == "keep"
    assert normalize_text("a <script>x</\u017fcript> b") == "a"
    assert normalize_text("a &lt;\u017ftyle&gt;x&lt;/\u017ftyle&gt; b") == "a b"
