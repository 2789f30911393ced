"""The set-wise VADER scores against the `vader` package's per-text scores."""

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import vader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vader.data.emoji import EMOJI

from annotation_assets.core import sentiment, sentiment_tokens
from annotation_assets.core.sentiment import (
    VaderBatchScorer,
    _round4,
    vader_compound_scores,
)
from tools.synthetic import generate_reviews

DEMO_DROPS = Path(__file__).resolve().parents[1] / "annotation_assets/demo_data/drops"
ANALYZER = vader.SentimentIntensityAnalyzer()


def _reference(texts: Sequence[str | None]) -> np.ndarray:
    return np.array(
        [ANALYZER.polarity_scores(t)["compound"] if t else np.nan for t in texts],
        dtype=np.float64,
    )


def _disagreements(
    texts: Sequence[str | None], ours: np.ndarray
) -> list[tuple[str | None, float, float]]:
    ref = _reference(texts)
    same = (np.abs(ours - ref) < 1e-6) | (np.isnan(ours) & np.isnan(ref))
    return [(texts[i], float(ours[i]), float(ref[i])) for i in np.flatnonzero(~same).tolist()]


def _demo_texts() -> list[str | None]:
    texts: list[str | None] = []
    for path in sorted(DEMO_DROPS.glob("product_reviews/*/part-*")):
        if path.suffix == ".jsonl":
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    texts.append(record.get("text"))
        elif path.suffix == ".csv":
            with open(path, encoding="utf-8", errors="replace", newline="") as fh:
                texts += [row.get("text") for row in csv.DictReader(fh)]
        elif path.suffix == ".parquet":
            texts += pd.read_parquet(path)["text"].tolist()
    return [t if isinstance(t, str) else None for t in texts]


def test_scores_equal_the_package_on_the_demo_drops() -> None:
    texts = _demo_texts()
    assert len(texts) > 100

    assert _disagreements(texts, vader_compound_scores(texts)) == []


def test_scores_equal_the_package_on_generated_reviews() -> None:
    texts = [r["text"] for r in generate_reviews(20_000, seed=11)]

    assert _disagreements(texts, vader_compound_scores(texts)) == []


def test_missing_and_empty_texts_score_nan_and_blank_texts_zero() -> None:
    scores = vader_compound_scores([None, "", "   \n", "great"])

    assert np.isnan(scores[:2]).all()
    assert scores[2:].tolist() == [0.0, ANALYZER.polarity_scores("great")["compound"]]


LEXICON = sorted(ANALYZER.lexicon)
PIECES = st.one_of(
    st.sampled_from(LEXICON),
    st.sampled_from(sorted(ANALYZER.booster)),
    st.sampled_from(sorted(ANALYZER.negations)),
    st.sampled_from(sorted(ANALYZER.special_cases)),
    st.sampled_from(sorted(ANALYZER.idioms)),
    st.sampled_from(sorted(ANALYZER.multiword)),
    st.sampled_from(sorted(EMOJI)),
    st.sampled_from(
        [
            "no",
            "not",
            "never",
            "so",
            "this",
            "without",
            "doubt",
            "but",
            "BUT",
            "least",
            "at",
            "very",
            "kind of",
            "kind",
            "of",
            "or",
            "nor",
            "the",
            "isn't",
            "don’t",
            "can‘t",
            "ʼ",
            "at least",
            "very least",
            "never so",
            "never this",
            "without doubt",
            "sort of",
        ]
    ),
    st.sampled_from(["!", "!!", "?", "??", "???", "?!", ",", ".", "...", ":)", ":-(", "(", ")"]),
    st.sampled_from(["️", "‍", "🏻", "⃣", "5", "#", "©"]),
    st.text(max_size=12),
)
SEPARATORS = st.sampled_from([" ", " ", " ", "  ", "\n", "\t", "", " ", "\u3000", "\x1c", "\x85"])


@st.composite
def _texts(draw: st.DrawFn) -> str:
    out = []
    for piece in draw(st.lists(PIECES, max_size=25)):
        style = draw(st.sampled_from(["as is", "as is", "upper", "title"]))
        piece = piece.upper() if style == "upper" else piece.title() if style == "title" else piece
        out += [piece, draw(SEPARATORS)]
    return "".join(out)


CONSTRUCTS = [
    "at least it is good",
    "at least good",
    "the very least good",
    "least good",
    "it is never so good",
    "never this bad",
    "never so very bad",
    "without doubt good",
    "without a doubt good",
    "kind of good",
    "sort of bad but great",
    "just enough good",
    "no good",
    "no problem",
    "no, no good",
    "no or bad",
    "that was the shit",
    "the bomb",
    "a kiss of death",
    "to die for",
    "yeah right",
    "a broken heart",
    "I can't stand it",
    "fed up and screwed up",
    "( '}{' )",
    "BAD and good",
    "VERY good and bad",
    "very GOOD",
    "Good BUT bad",
    "good but bad but great",
    "not bad",
    "isn't very good",
    "hardly good",
    "GOOD!!!!!",
    "bad???",
    "good?? bad",
    "break a leg, on the ball, under the weather",
    "it cut the mustard in the red",
    "😀 great 👍🏽 ❤️ 5️⃣ stars ©",
    "don’t like it ʼ‘",
    ":) :-( :D, ;)",
]


@pytest.mark.parametrize("text", CONSTRUCTS)
def test_scores_equal_the_package_on_each_construct(text: str) -> None:
    assert _disagreements([text], vader_compound_scores([text])) == []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_texts(), min_size=1, max_size=8))
def test_scores_equal_the_package_on_random_mixtures(texts: list[str]) -> None:
    assert _disagreements(texts, vader_compound_scores(texts)) == []


_MULTI_KEYS = sorted(k for k in EMOJI if len(k) > 1)
EMOJI_PIECES = st.one_of(
    st.sampled_from(sorted(EMOJI)),
    # parts of multi-code-point keys: matches that end early, start inside another, or clash
    st.builds(lambda k, i: k[:i], st.sampled_from(_MULTI_KEYS), st.integers(1, 7)),
    st.builds(lambda k, i: k[i:], st.sampled_from(_MULTI_KEYS), st.integers(1, 7)),
    st.sampled_from(["\ufe0f", "\ufe0e", "\u200d", "\U0001f3fb", "\u20e3", "’", "ʼ", "‘"]),
    st.sampled_from(["\u3000", "\xa0", " ", "", "a", "good", "BAD", "1", "#", "*", "!", "?"]),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(EMOJI_PIECES, max_size=12).map("".join), min_size=1, max_size=6))
def test_emoji_runs_are_rewritten_as_the_package_translates_them(texts: list[str]) -> None:
    # glued emoji, key fragments, residue, apostrophes and wide spaces, many texts per batch
    assert _disagreements(texts, vader_compound_scores(texts)) == []


@pytest.mark.parametrize(
    "text",
    [
        "\U0001f468\u200d\U0001f469\u200d\U0001f467 family",  # a ZWJ key over other keys
        "#\ufe0f\u20e3\ufe0f\ufe0f #\ufe0f 1\u20e3",  # keycaps, loose residue
        "\u2764\ufe0f\u2764\u2764\ufe0f\u200d\U0001f525 great",  # adjacent matches
        "don’t \u3000 \U0001f600\U0001f3fd\U0001f3fd bad’",
    ],
)
def test_emoji_sequences_and_their_parts_score_as_the_package(text: str) -> None:
    texts = [text, "plain ascii text", f"{text} {text}"]
    assert _disagreements(texts, vader_compound_scores(texts)) == []


@pytest.mark.parametrize(
    "text",
    [
        # "🇦🇨" then "🇨🇦" from its second character: the walk takes the first and keeps the
        # last "🇦" as it is; left to the package's translator
        "\U0001f1e6\U0001f1e8\U0001f1e6 \u3000 good",
        "\U0001f1fa\U0001f1f8\U0001f1ec\U0001f1e7 great",  # "🇺🇸🇬🇧", "🇸🇬" across them
        # "⛹‍♀" holds "♀", a key ending inside it: skipped set-wise
        "\u26f9\u200d\u2640 \u3000 good",
    ],
)
def test_a_match_starting_inside_another_is_skipped_as_the_package_walks(text: str) -> None:
    scorer = VaderBatchScorer()
    data, sizes = sentiment_tokens.encode_texts([text, "fine 😀"])

    rewritten, lens = scorer._text.prepared(data, sizes)

    first = rewritten[: lens[0]].decode("utf-8")
    assert first.split() == ANALYZER._emoji.translate(text).split()
    assert _disagreements([text], vader_compound_scores([text])) == []


def test_scores_are_the_same_with_a_full_vocabulary_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    texts = _reviews_with_gaps(230, seed=11)
    fresh = VaderBatchScorer().compound(texts, workers=1)
    monkeypatch.setattr(sentiment, "CHUNK_RECORDS", 40)
    monkeypatch.setattr(sentiment, "VOCAB_CACHE_TOKENS", 50)  # full after the first chunk
    scorer = VaderBatchScorer()

    first = scorer.compound(texts, workers=2)
    again = scorer.compound(texts[::-1], workers=2)[::-1]  # cached rows, other order

    assert len(scorer._vocab_cache) == 50
    np.testing.assert_array_equal(first, fresh)
    np.testing.assert_array_equal(again, fresh)


def test_tokens_longer_than_a_word_and_with_nul_bytes_stay_distinct() -> None:
    texts = [
        "extraordinarily good",
        "extraordinarilygood good",
        "goodgoodgoodgoodgood bad",
        "goodgoodgoodgoodgoo bad",
        "good\x00 bad",
        "good\x00\x00 bad good",
        "😀😀😀😀😀 great",
    ]

    assert _disagreements(texts, vader_compound_scores(texts)) == []


def test_overlapping_multiword_phrases_are_scored_by_the_package() -> None:
    analyzer = vader.SentimentIntensityAnalyzer(
        multiword={"fed up": -1.8, "up set": -1.0, "so fed up": -2.5}
    )
    scorer = VaderBatchScorer(analyzer)
    texts = ["I am so fed up set in my ways", "fed up", "totally fed up set", "up set"]

    ours = scorer.compound(texts)

    assert ours.tolist() == [analyzer.polarity_scores(t)["compound"] for t in texts]


@given(
    st.floats(min_value=-1, max_value=1)
    | st.integers(-10_000, 10_000).map(lambda k: k / 1e4 + 5e-5)
)
def test_rounding_matches_pythons_round(x: float) -> None:
    assert _round4(np.array([x]))[0] == round(x, 4)


@pytest.mark.parametrize("size", [1, 3])
def test_batches_give_the_same_scores_as_single_texts(size: int) -> None:
    texts = [r["text"] for r in generate_reviews(size * 50, seed=size)]

    alone = np.array([vader_compound_scores([t])[0] for t in texts])

    np.testing.assert_array_equal(vader_compound_scores(texts), alone)


def _reviews_with_gaps(n: int, *, seed: int) -> list[str | None]:
    """Generated review texts with a missing and an empty one among them."""
    texts: list[str | None] = [r["text"] for r in generate_reviews(n, seed=seed)]
    texts[5] = None
    texts[n // 3] = ""
    return texts


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_scores_do_not_depend_on_the_number_of_threads(
    workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = _reviews_with_gaps(230, seed=7)
    alone = VaderBatchScorer().compound(texts, workers=1)
    monkeypatch.setattr(sentiment, "CHUNK_RECORDS", 40)  # six chunks

    threaded = VaderBatchScorer().compound(texts, workers=workers)

    np.testing.assert_array_equal(threaded, alone)
    assert _disagreements(texts, threaded) == []


def test_ascii_whitespace_is_what_str_split_splits_on() -> None:
    every_byte = np.arange(256, dtype=np.uint8)
    expected = [b < 128 and chr(b).isspace() for b in range(256)]

    assert sentiment_tokens.ascii_space(every_byte).tolist() == expected


@pytest.mark.parametrize(
    ("n", "workers", "sizes"),
    [(0, 2, []), (7, 2, [7]), (11, 2, [6, 5]), (21, 2, [6, 5, 5, 5]), (21, 1, [7, 7, 7])],
)
def test_chunks_are_even_and_a_multiple_of_the_workers(
    n: int, workers: int, sizes: list[int]
) -> None:
    chunks = sentiment._even_chunks(np.arange(n), 10, workers)

    assert [len(c) for c in chunks] == sizes
    assert np.concatenate([np.zeros(0, dtype=int), *chunks]).tolist() == list(range(n))


def test_default_workers_stay_within_the_cpus_and_the_cap() -> None:
    assert 1 <= sentiment.default_workers() <= sentiment.MAX_WORKERS


_TOKEN_CHARS = st.sampled_from(["a", "b", "é", "😀", "\x00", "!"])


@given(st.lists(st.text(_TOKEN_CHARS, min_size=1, max_size=26), min_size=1, max_size=40))
def test_token_ids_are_equal_exactly_for_equal_tokens(tokens: list[str]) -> None:
    # Tokens sharing 8- and 16-byte prefixes, with and without NUL bytes (two code paths).
    big = " ".join(tokens).encode("utf-8")
    sizes = np.array([len(t.encode("utf-8")) for t in tokens])
    starts = np.cumsum(sizes + 1) - (sizes + 1)

    ids, vocab = sentiment_tokens.factorize_tokens(big, starts, starts + sizes)

    assert [vocab[i] for i in ids.tolist()] == [t.encode("utf-8") for t in tokens]
    assert len(vocab) == len(set(tokens))


def _arrow_forms(texts: list[str | None]) -> dict[str, pa.Array | pa.ChunkedArray]:
    padded = pa.array(["pad", *texts, "pad"], pa.string())
    half = len(texts) // 2
    return {
        "string": pa.array(texts, pa.string()),
        "large_string": pa.array(texts, pa.large_string()),
        "string_view": pa.array(texts, pa.string_view()),
        "slice": padded.slice(1, len(texts)),
        "chunks": pa.chunked_array(
            [pa.array(texts[:half], pa.string()), pa.array(texts[half:], pa.string())]
        ),
    }


@pytest.mark.parametrize("form", ["string", "large_string", "string_view", "slice", "chunks"])
def test_arrow_strings_are_read_in_place_with_the_same_scores(
    form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = _reviews_with_gaps(120, seed=3)
    texts[60:62] = ["😀 great 👍🏽 ❤️ 5️⃣ stars ©", "don’t like it\u3000at all"]
    monkeypatch.setattr(sentiment, "CHUNK_RECORDS", 25)  # chunks around the gaps

    ours = VaderBatchScorer().compound(_arrow_forms(texts)[form], workers=2)

    np.testing.assert_array_equal(ours, VaderBatchScorer().compound(texts, workers=1))
    assert _disagreements(texts, ours) == []


def test_an_arrow_array_of_other_values_is_refused() -> None:
    with pytest.raises(TypeError, match="must be strings"):
        vader_compound_scores(pa.array([1, 2]))
