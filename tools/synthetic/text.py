"""One review's text: sentences drawn from the vocabulary for a label, styled (typos, case,
emoji), optionally made noisy as scraped HTML is, or edited into a near duplicate."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from tools.synthetic.catalog import ASPECTS, GENERIC_ASPECTS, NO_CUE_ASPECTS
from tools.synthetic.model import Aspect, Category
from tools.synthetic.templates import (
    CLOSERS,
    CUES,
    EMOJI,
    FACTS,
    FILLERS,
    MIXED,
    OPENERS,
    OPENERS_CONTEXT,
    SHORT,
    SHORT_CUES,
    SHORT_TAILS,
    SLOTS,
    STARS,
    STYLES,
    SWAPS,
    TRACKERS,
    WRAP,
    WRAPPERS,
)

_CUE_RATE = {"negative": 0.5, "neutral": 0.1, "positive": 0.5}


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def _slots(rng: random.Random, cat: Category) -> dict[str, str]:
    if cat.plural:
        item = rng.choice((f"the {cat.noun}", f"these {cat.noun}"))
        it, be, it_be = "they", "are", "they're"
    else:
        item = rng.choice((f"the {cat.noun}", f"this {cat.noun}"))
        it, be, it_be = "it", "is", "it's"
    out = {"item": item, "it": it, "be": be, "it_be": it_be, "noun": cat.noun}
    out["use"] = rng.choice(cat.uses)
    for key, values in SLOTS.items():
        out[key] = rng.choice(values)
    return out


@dataclass
class _Ctx:
    rng: random.Random
    cat: Category
    clauses: set[str] = field(default_factory=set)
    polarity: dict[str, str] = field(default_factory=dict)
    wraps: set[str] = field(default_factory=set)

    def cue_aspect(self, label: str) -> str:
        pool = [a for a in self.cat.aspects if a not in NO_CUE_ASPECTS]
        aspect = ASPECTS[self.rng.choice(pool)]
        for _ in range(6):
            if self.polarity.get(aspect.name, label) == label:
                break
            aspect = ASPECTS[self.rng.choice(pool)]
        self.polarity[aspect.name] = label
        return aspect.name

    def pick(self) -> Aspect:
        pool = self.cat.aspects if self.rng.random() < 0.72 else GENERIC_ASPECTS
        return ASPECTS[self.rng.choice(pool)]

    def clause(self, label: str) -> str:
        clause = ""
        for _ in range(8):
            aspect = self.pick()
            pool = {"positive": aspect.pos, "negative": aspect.neg, "neutral": aspect.neu}[label]
            clause = self.rng.choice(pool)
            if clause not in self.clauses and self.polarity.get(aspect.name, label) == label:
                break
        self.clauses.add(clause)
        self.polarity[aspect.name] = label
        return clause

    def wrap(self, label: str) -> str:
        wrap = self.rng.choice(WRAP[label])
        if wrap in self.wraps:
            wrap = "{c}."
        self.wraps.add(wrap)
        return wrap


def _aspect_sentence(ctx: _Ctx, label: str) -> str:
    clause = ctx.clause(label)
    return _cap(ctx.wrap(label).format(c=clause))


def _mixed_sentence(ctx: _Ctx, label: str) -> str:
    p = ctx.clause("positive")
    n = ctx.clause("negative")
    return _cap(ctx.rng.choice(MIXED[label]).format(p=p, n=n))


def _cue_sentence(ctx: _Ctx, label: str) -> str:
    template = ctx.rng.choice(CUES[label])
    if "{aspect}" in template:
        template = template.replace("{aspect}", ctx.cue_aspect("positive"))
    if "{n}" in template:
        template = template.replace("{n}", ctx.clause("negative"))
    return template


def _body(rng: random.Random, cat: Category, label: str, cue: bool) -> list[str]:
    if rng.random() < 0.035:
        pool = SHORT_CUES[label] if cue else SHORT[label]
        return [rng.choice(pool) + rng.choice(SHORT_TAILS)]
    long = rng.random() < 0.18
    parts: list[str] = []
    ctx = _Ctx(rng, cat)
    if rng.random() < (0.85 if long else 0.35):
        openers = OPENERS_CONTEXT + OPENERS[label]
        parts.append(rng.choice(openers))
    n_aspects = rng.randint(3, 6) if long else rng.choice((1, 1, 2, 2, 3))
    if label == "neutral":
        kind = rng.random()
        if kind < 0.4:
            parts.append(rng.choice(FACTS))
            n_aspects = max(0, n_aspects - 1)
        elif kind < 0.75:
            parts.append(_mixed_sentence(ctx, label))
            n_aspects = max(0, n_aspects - 1)
        for _ in range(n_aspects):
            parts.append(_aspect_sentence(ctx, label))
        if long and rng.random() < 0.6:
            parts.insert(rng.randint(0, len(parts)), rng.choice(FACTS))
    else:
        for _ in range(n_aspects):
            parts.append(_aspect_sentence(ctx, label))
        if rng.random() < (0.35 if long else 0.15):
            parts.insert(rng.randint(0, len(parts)), _mixed_sentence(ctx, label))
    if cue:
        parts.insert(rng.randint(0, len(parts)), _cue_sentence(ctx, label))
    if rng.random() < 0.25:
        parts.append(rng.choice(STARS[label]))
    if rng.random() < (0.7 if long else 0.3):
        parts.append(rng.choice(CLOSERS[label]))
    return parts


def _typo(rng: random.Random, word: str) -> str:
    if len(word) < 4 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 1)
    op = rng.randrange(4)
    if op == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == 1:
        return word[:i] + word[i + 1 :]
    if op == 2:
        return word[:i] + word[i] + word[i:]
    return word[:i] + rng.choice("asdfghjklqwertyuiop") + word[i + 1 :]


def _style(rng: random.Random, text: str, label: str) -> str:
    if rng.random() < 0.12:
        words = text.split(" ")
        for _ in range(rng.randint(1, 2)):
            j = rng.randrange(len(words))
            words[j] = _typo(rng, words[j])
        text = " ".join(words)
    if rng.random() < 0.12:
        text = text.lower()
        if rng.random() < 0.5:
            text = text.replace("'", "")
    if rng.random() < 0.1 and text[-1:] in ".!":
        text = text[:-1]
    if label == "positive" and rng.random() < 0.08:
        text = text.rstrip(".!") + "!!"
    if rng.random() < 0.1:
        emoji = rng.choice(EMOJI[label])
        text = f"{text} {emoji * rng.choice((1, 1, 2, 3))}"
    return text


def render(rng: random.Random, cat: Category, label: str) -> str:
    cue = rng.random() < _CUE_RATE[label]
    slots = _slots(rng, cat)
    body = _body(rng, cat, label, cue)
    parts = [_cap(p.format_map(slots)) if p[:1] == "{" else p.format_map(slots) for p in body]
    if len(parts) > 4 and rng.random() < 0.6:
        cut = rng.randint(2, len(parts) - 2)
        text = " ".join(parts[:cut]) + "\n\n" + " ".join(parts[cut:])
    else:
        text = " ".join(parts)
    return _style(rng, text, label)


def _fullwidth(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)


def _htmlify(rng: random.Random, text: str) -> str:
    body = text.replace("\n\n", rng.choice(("<br/><br/>", "</p><p>", "<br>\n<br>")))
    if rng.random() < 0.35:
        body = re.sub(r"(?<=[.!?]) (?=\S)", rng.choice(("<br/>", "<br>", "<br />")), body, count=2)
    if rng.random() < 0.3:
        words = body.split(" ")
        j = rng.randrange(len(words))
        if words[j] and "<" not in words[j]:
            words[j] = rng.choice(("<b>{}</b>", "<strong>{}</strong>", "<i>{}</i>")).format(
                words[j]
            )
        body = " ".join(words)
    if rng.random() < 0.5:
        body = body.replace("'", "&#39;").replace('"', "&quot;")
    if rng.random() < 0.4:
        body = body.replace(" and ", " &amp; ", 1)
    if rng.random() < 0.3:
        spaces = [m.start() for m in re.finditer(" ", body)]
        if spaces:
            k = rng.choice(spaces)
            body = body[:k] + "&nbsp;" + body[k + 1 :]
    wrapped = rng.choice(WRAPPERS).format(body)
    r = rng.random()
    if r < 0.07:
        tracker = rng.choice(TRACKERS).replace("{pid}", str(rng.randrange(10**6)))
        wrapped = wrapped + tracker if rng.random() < 0.7 else tracker + wrapped
    elif r < 0.11:
        wrapped = rng.choice(STYLES) + wrapped
    if "<" not in wrapped:
        wrapped = f"<p>{wrapped}</p>"
    return wrapped


def _garble(rng: random.Random, text: str) -> str:
    if rng.random() < 0.6:
        text = rng.choice(("  ", "\n", " \n\t", "\t", "")) + text + rng.choice(("  ", "\n  ", " "))
        if rng.random() < 0.5:
            text = text.replace(" ", "   ", 1)
    if rng.random() < 0.3:
        words = text.split(" ")
        j = rng.randrange(len(words))
        words[j] = _fullwidth(words[j])
        text = " ".join(words)
    if rng.random() < 0.4 or text.strip() == text:
        k = rng.randrange(len(text) + 1)
        text = text[:k] + rng.choice(("\u200b", "\u200b", "\ufeff", "\u200c")) + text[k:]
    return text


def noisy(rng: random.Random, text: str) -> str:
    if rng.random() < 0.85:
        text = _htmlify(rng, text)
        if rng.random() < 0.35:
            text = _garble(rng, text)
        return text
    return _garble(rng, text)


def near_duplicate(rng: random.Random, text: str) -> str:
    words = text.split(" ")
    for _ in range(8):
        op = rng.randrange(3)
        if op == 0:
            idx = [i for i, w in enumerate(words) if w.lower() in SWAPS]
            if idx:
                i = rng.choice(idx)
                new = SWAPS[words[i].lower()]
                out = words[:i] + [_cap(new) if words[i][:1].isupper() else new] + words[i + 1 :]
                return " ".join(out)
        elif op == 1:
            idx = [i for i, w in enumerate(words) if w.lower() in FILLERS]
            if idx and len(words) > 1:
                i = rng.choice(idx)
                return " ".join(words[:i] + words[i + 1 :])
        else:
            stripped = text.rstrip()
            tail = text[len(stripped) :]
            if stripped.endswith("."):
                return stripped[:-1] + rng.choice(("!", "", "..")) + tail
            if stripped.endswith("!"):
                return stripped + "!" + tail
            return stripped + "." + tail
    return text + "."
