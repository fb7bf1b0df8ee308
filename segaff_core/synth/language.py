"""Instructions that name exactly one part of a scene, from its layout.

A referring expression is a noun ("drawer", "cabinet door", "flap", "lid"), an optional scope ("of the left
dresser") and modifiers that single the part out within the scope: vertical and horizontal order of the
handles ("top", "second ... from the bottom", "leftmost", "top-left", "in the right column"), the handle
kind ("with the knob", "handleless"), the colour. Verbs suit the motion: a flap or an oven door is pulled
down, a lid lifted, a handleless front pushed. Left and right are along the back wall, as every camera
sees them; heights are world z.
A modifier is used only when exactly one part of the scope satisfies it. A view's instructions name
their part both in the whole scene and among the parts that view shows: "the second door from the left"
is not given where the leftmost door is out of sight (it would name another door there).
"""
from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np

from segaff_core.synth.layout import Part, SceneLayout

LEVEL_TOLERANCE_M = 0.04
Direction = Literal["vertical", "horizontal"]
_ORDINALS = {1: "second", 2: "third", 3: "fourth"}
# How a handle kind is named: "the drawer with the knob"; a handleless front is "the handleless drawer".
_HANDLE_WORDS = {"knob": "knob", "bar": "bar handle", "recessed": "recessed grip", "none": "handleless",
                 "edge": "edge pull", "cup": "cup pull"}
_BEFORE_NOUN = {"handleless"}


@dataclass(frozen=True)
class Modifier:
    """Words before and after the noun, e.g. ("second", "from the top")."""

    before: str = ""
    after: str = ""


def _levels(values: list[float]) -> list[float]:
    """Distinct levels of ``values``: sorted ascending, values closer than the tolerance merged."""
    levels: list[float] = []
    for value in sorted(values):
        if not levels or value - levels[-1] > LEVEL_TOLERANCE_M:
            levels.append(value)
    return levels


def _level_index(levels: list[float], value: float) -> int:
    return int(np.argmin([abs(value - level) for level in levels]))


def _rank_words(rank: int, count: int, direction: Direction, line: bool = True) -> list[Modifier]:
    """Words for the ``rank``-th of ``count`` levels (rank 0 = top, or leftmost). Inner ranks ("middle",
    "second from the top") only when the things form a ``line`` (one column, or one row)."""
    first, last = ("top", "bottom") if direction == "vertical" else ("left", "right")
    if count == 2:
        if direction == "vertical":
            return [Modifier("top"), Modifier("upper")] if rank == 0 else [Modifier("bottom"), Modifier("lower")]
        return [Modifier(first if rank == 0 else last)]
    if direction == "horizontal" and rank in (0, count - 1):
        return [Modifier(f"{first if rank == 0 else last}most")]
    if rank in (0, count - 1):
        return [Modifier(first if rank == 0 else last)]
    if not line:
        return []
    words = [Modifier("middle")] if count == 3 else []
    from_first, from_last = rank, count - 1 - rank
    if from_first in _ORDINALS:
        words.append(Modifier(_ORDINALS[from_first], f"from the {first}"))
    if from_last in _ORDINALS:
        words.append(Modifier(_ORDINALS[from_last], f"from the {last}"))
    return words


def _position(values: dict[int, float], target: int, group: list[int], direction: Direction,
              across: dict[int, float], one_piece: bool = False) -> list[Modifier]:
    """Order words that single ``target`` out of ``group`` along one direction ([] when tied).
    ``across`` holds the other coordinate: inner ranks need a group that is a single line, or
    ``one_piece`` (the parts of one piece of furniture, where rows and columns are counted)."""
    levels = _levels([values[i] for i in group])
    if direction == "vertical":
        levels = levels[::-1]
    level = _level_index(levels, values[target])
    if len(levels) < 2 or sum(_level_index(levels, values[i]) == level for i in group) != 1:
        return []
    line = one_piece or len(_levels([across[i] for i in group])) == 1
    return _rank_words(level, len(levels), direction, line)


def _members(values: dict[int, float], target: int, group: list[int]) -> list[int]:
    """Members of ``group`` on the same level as ``target``."""
    return [i for i in group if abs(values[i] - values[target]) <= LEVEL_TOLERANCE_M]


def _lines(values: dict[int, float], group: list[int]) -> bool:
    """Whether ``group`` forms lines along this coordinate (rows, or columns): 2+ members on every level."""
    levels = _levels([values[i] for i in group])
    return all(sum(_level_index(levels, values[i]) == k for i in group) >= 2 for k in range(len(levels)))


@dataclass(frozen=True)
class _Referents:
    """Things of one kind (parts or furniture) with their nouns and positions."""

    nouns: dict[int, tuple[str, ...]]
    lateral: dict[int, float]
    height: dict[int, float]
    extra: dict[int, tuple[str, ...]]  # further single-word properties: colour, handle kind

    def modifiers(self, target: int, group: list[int], one_piece: bool = False) -> list[Modifier]:
        """Every modifier that singles ``target`` out of ``group`` (an empty one when it is alone);
        ``one_piece``: the group belongs to one piece of furniture."""
        if group == [target]:
            return [Modifier()]
        found: list[Modifier] = []
        found += _position(self.height, target, group, "vertical", self.lateral, one_piece)
        found += _position(self.lateral, target, group, "horizontal", self.height, one_piece)
        row = _members(self.height, target, group)
        column = _members(self.lateral, target, group)
        if len(row) > 1 and _lines(self.height, group):  # "the top-left drawer", "the left drawer in the top row"
            for vertical in self._level_words(target, group, self.height, "vertical"):
                for horizontal in _position(self.lateral, target, row, "horizontal", self.height):
                    side = horizontal.before.removesuffix("most")
                    if vertical in ("top", "bottom", "upper", "lower") and side in ("left", "right") \
                            and not horizontal.after:
                        found.append(Modifier(f"{vertical}-{side}"))
                    found.append(Modifier(horizontal.before, f"{horizontal.after} in the {vertical} row".strip()))
        if len(column) > 1 and _lines(self.lateral, group):  # "the second drawer from the top in the left column"
            for horizontal in self._level_words(target, group, self.lateral, "horizontal"):
                for vertical in _position(self.height, target, column, "vertical", self.lateral):
                    found.append(Modifier(vertical.before, f"{vertical.after} in the {horizontal} column".strip()))
        for word in self.extra[target]:
            if sum(word in self.extra[i] for i in group) == 1:
                with_handle = word in _HANDLE_WORDS.values() and word not in _BEFORE_NOUN
                found.append(Modifier("", f"with the {word}") if with_handle else Modifier(word))
        return found

    @staticmethod
    def _level_words(target: int, group: list[int], values: dict[int, float], direction: Direction) -> list[str]:
        """Single words for the level (row or column) of ``target`` among the levels of ``group``."""
        levels = _levels([values[i] for i in group])
        if direction == "vertical":
            levels = levels[::-1]
        if len(levels) < 2:
            return []
        rank = _level_index(levels, values[target])
        return [m.before for m in _rank_words(rank, len(levels), direction) if not m.after]


def _phrase(modifier: Modifier, noun: str, scope: str) -> str:
    words = ["the", modifier.before, noun, modifier.after, scope]
    return " ".join(w for w in words if w)


def _furniture_phrases(layout: SceneLayout, pieces: list[int]) -> dict[int, list[str]]:
    """For each of ``pieces`` (furniture indices), the phrases ("the left dresser") that name it alone among them."""
    furniture = layout.furniture
    refs = _Referents(
        nouns={i: furniture[i].nouns for i in pieces},
        lateral={i: float(furniture[i].lo[0] + furniture[i].hi[0]) / 2 for i in pieces},
        height={i: float(furniture[i].lo[2] + furniture[i].hi[2]) / 2 for i in pieces},
        extra={i: (furniture[i].colour,) for i in pieces},
    )
    out: dict[int, list[str]] = {}
    for i in pieces:
        phrases: list[str] = []
        for noun in furniture[i].nouns:
            group = [j for j, nouns in refs.nouns.items() if noun in nouns]
            for modifier in refs.modifiers(i, group):
                if not modifier.after:  # "the left dresser", not "the dresser in the top row"
                    phrases.append(_phrase(modifier, noun, ""))
        out[i] = phrases
    return out


def referring_expressions(layout: SceneLayout, among: Optional[Collection[int]] = None) -> list[list[str]]:
    """For each part of ``layout``, every noun phrase that names it and no other part of the scene; with
    ``among`` (part indices, e.g. the parts a camera sees), no other part of ``among`` (furniture counted
    only where it has parts among them), and no phrase for the parts outside it."""
    parts = layout.parts
    members = sorted(set(range(len(parts)) if among is None else among))
    refs = _Referents(
        nouns={i: parts[i].nouns for i in members},
        lateral={i: float(parts[i].handle[0]) for i in members},
        height={i: float(parts[i].handle[2]) for i in members},
        extra={i: (_HANDLE_WORDS[parts[i].handle_kind], layout.furniture[parts[i].furniture].colour) for i in members},
    )
    furniture_phrases = _furniture_phrases(layout, sorted({parts[i].furniture for i in members}))
    out: list[list[str]] = [[] for _ in parts]
    for i in members:
        part = parts[i]
        phrases: list[str] = []
        scopes = [("", members)] + [
            (f"of {name}", [j for j in members if parts[j].furniture == part.furniture])
            for name in furniture_phrases[part.furniture]
        ]
        for scope, scope_members in scopes:
            for noun in part.nouns:
                if scope and " " in noun and not noun.startswith("cabinet"):
                    continue  # not "the oven door of the oven", "the fridge door of the refrigerator"
                group = [j for j in scope_members if noun in parts[j].nouns]
                phrases += [_phrase(m, noun, scope) for m in refs.modifiers(i, group, one_piece=bool(scope))]
        out[i] = list(dict.fromkeys(phrases))
    return out


def _words(text: str) -> str:
    """``text`` lower-cased, with every run of characters other than letters, digits and hyphens one space."""
    return " ".join(re.split(r"[^a-z0-9-]+", text.lower())).strip()


def named_part(expressions: list[list[str]], instruction: str) -> Optional[int]:
    """The part that ``instruction`` names: the one with the longest referring expression (of
    :func:`referring_expressions`) that the instruction contains as whole words, case and punctuation
    ignored ("Open the top drawer." names the part called "the top drawer"); None when it names none."""
    text = f" {_words(instruction)} "
    best: Optional[int] = None
    best_length = 0
    for index, phrases in enumerate(expressions):
        for phrase in phrases:
            words = _words(phrase)
            if len(words) > best_length and f" {words} " in text:
                best, best_length = index, len(words)
    return best


def _verbs(part: Part) -> tuple[str, ...]:
    if part.category == "lid":
        return ("Lift {}.", "Open {}.", "Raise {}.")
    if part.handle_kind == "none":  # push-to-open: pressed, never pulled by a handle
        if part.category == "drawer":
            return ("Open {}.", "Push {} to open it.", "Press {} to pop it open.")
        return ("Open {}.", "Push {} to open it.")
    if part.category == "drawer":
        return ("Open {}.", "Pull out {}.", "Pull {} open.", "Slide out {}.", "Pull the handle of {}.")
    if abs(part.axis[2]) < 0.5:  # a horizontal hinge at the bottom: a flap, an oven or dishwasher door
        if "flap" in part.nouns:
            return ("Open {}.", "Pull down {}.", "Lower {}.", "Fold down {}.")
        return ("Open {}.", "Pull down {}.", "Lower {}.")
    return ("Open {}.", "Swing open {}.", "Pull open {}.", "Pull the handle of {}.")


@dataclass(frozen=True)
class Instruction:
    """An instruction (``text``, e.g. "Open the top drawer.") made from a referring expression (``phrase``)."""

    phrase: str
    text: str


def describe_parts(layout: SceneLayout, rng: np.random.Generator) -> list[list[Instruction]]:
    """For each part, an instruction from each of its referring expressions (a verb drawn for each), in the
    order of preference: the shortest expression first, the others shuffled."""
    out: list[list[Instruction]] = []
    for part, phrases in zip(layout.parts, referring_expressions(layout)):
        ordered = sorted(phrases, key=lambda p: (len(p), p))
        if ordered:
            ordered = [ordered[0]] + [ordered[1 + k] for k in rng.permutation(len(ordered) - 1)]
        verbs = _verbs(part)
        instructions = []
        for phrase in ordered:
            options = [v for v in verbs if "handle" not in v or "handle" not in phrase]
            instructions.append(Instruction(phrase, options[int(rng.integers(len(options)))].format(phrase)))
        out.append(instructions)
    return out


def instructions_in_view(candidates: list[Instruction], phrases_in_view: Collection[str],
                         max_instructions: int = 4) -> list[str]:
    """The first ``max_instructions`` of ``candidates`` (one part's, of :func:`describe_parts`) whose phrase is
    among ``phrases_in_view`` (that part's :func:`referring_expressions` among the parts a view shows)."""
    valid = set(phrases_in_view)
    return [c.text for c in candidates if c.phrase in valid][:max_instructions]
