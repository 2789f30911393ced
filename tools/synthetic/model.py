"""The vocabulary's building blocks: a product aspect with its clauses per polarity, and a
product category."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Aspect:
    name: str
    pos: tuple[str, ...]
    neg: tuple[str, ...]
    neu: tuple[str, ...]


@dataclass(frozen=True)
class Category:
    noun: str
    plural: bool
    aspects: tuple[str, ...]
    uses: tuple[str, ...]
    products: tuple[str, ...]


def aspect(name: str, pos: list[str], neg: list[str], neu: list[str]) -> Aspect:
    return Aspect(name, tuple(pos), tuple(neg), tuple(neu))
