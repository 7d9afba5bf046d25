"""Generic value checks: a YAML value against a dataclass field's type hint and a Rule, each problem one line.

Knows nothing of Period Eye's settings: pipeline/config.py gives the dataclasses and its table of rules.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import reprlib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeGuard

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class Rule:
    """What a value of the right type must also satisfy; the wording completes "<key> must be <type> ..."."""

    ok: Callable[[Any], bool]
    text: str = ""  # appended to the type: ">= 1"
    expected: str = ""  # replaces the whole description: "'auto' or a whole number >= 1"
    choices: tuple = ()  # shown as "<value> unknown; choose from ..."
    each: bool = False  # a list: every element must pass


def at_least(lo: float) -> Rule:
    return Rule(lambda v: v >= lo, f">= {lo}")


def within(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Rule:
    def ok(v: float) -> bool:
        return (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)

    return Rule(ok, f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}")


def one_of(choices: Sequence[str], each: bool = False, also: Sequence[str] = ()) -> Rule:
    """`also`: accepted here but refused later with its own reason (not offered as a choice)."""
    allowed = set(choices) | set(also)
    return Rule(lambda v: v in allowed, choices=tuple(choices), each=each)


def is_int(v: Any) -> TypeGuard[int]:
    """A whole number as YAML gives it: `true` is a bool, not 1."""
    return isinstance(v, int) and not isinstance(v, bool)


def _matches(value: Any, hint: Any) -> bool:
    """Whether `value` (as YAML gives it) has the type hint's type; a bool is not a number, NaN not a number."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:  # the type of its choices here; which choice, in check_value
        return any(_matches(value, type(a)) for a in args)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is list:
        return isinstance(value, list) and all(_matches(v, args[0]) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return is_int(value)
    if hint is float:
        return (is_int(value) or isinstance(value, float)) and math.isfinite(value)
    return isinstance(value, hint)


TYPE_WORDS = {bool: ("true or false", "true/false values"), int: ("an integer", "integers"),
              float: ("a number", "numbers"), str: ("a string", "strings")}


def _describe(hint: Any, rule: Rule | None) -> str:
    """"an integer >= 1", "a list of strings, or null": the type hint in words, with the rule's range."""
    if rule is not None and rule.expected:
        return rule.expected
    args = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_origin(hint) in (
        typing.Union, types.UnionType) else [hint]
    words = []
    for a in args:
        if typing.get_origin(a) is list:
            words.append("a list of " + TYPE_WORDS[_plain(typing.get_args(a)[0])][1])
        else:
            words.append(TYPE_WORDS[_plain(a)][0] if _plain(a) in TYPE_WORDS else "a mapping")
    text = " or ".join(words) + (f" {rule.text}" if rule is not None and rule.text else "")
    return text + (", or null" if len(args) < len(typing.get_args(hint)) else "")


def show(value: Any) -> str:
    """A value for a message: short even for a huge or recursive one."""
    return _REPR.repr(value)


_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict, _REPR.maxlevel = 60, 60, 6, 6, 3


def kind(value: Any) -> str:
    """"a mapping", "a list", or the value itself."""
    words: dict[type, str] = {dict: "a mapping", list: "a list", type(None): "nothing"}
    return next((w for t, w in words.items() if isinstance(value, t)), show(value))


def _plain(hint: Any) -> Any:
    """A Literal's value type (`Literal["a", "b"]` -> str); any other hint as it is."""
    return type(typing.get_args(hint)[0]) if typing.get_origin(hint) is typing.Literal else hint


def choices_of(hint: Any) -> Rule | None:
    """The rule a `Literal[...]` hint makes (also inside `list[...]` or `... | None`): the static choices live on
    the field; registries' choices come from the caller's table of rules."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return one_of(args)
    if origin is list and typing.get_origin(args[0]) is typing.Literal:
        return one_of(typing.get_args(args[0]), each=True)
    if origin in (typing.Union, types.UnionType):
        return next((r for r in map(choices_of, args) if r is not None), None)
    return None


def check_value(key: str, value: Any, hint: Any, rule: Rule | None) -> str | None:
    """The problem with one value, as a line naming `key`, or None; a Literal hint gives the choices."""
    rule = rule or choices_of(hint)
    if not _matches(value, hint):
        return f"{key} must be {_describe(hint, rule)}, got {show(value)}"
    if rule is None or value is None:
        return None
    for item in value if rule.each else [value]:
        if not rule.ok(item):
            if rule.choices:
                return f"{key} {show(item)} unknown; choose from {', '.join(map(repr, rule.choices))}"
            return f"{key} must be {_describe(hint, rule)}, got {show(value)}"
    return None


class Problems:
    """Every problem found in one file, each one line starting with the file and naming the key."""

    def __init__(self, path: Path):
        self.path = path
        self.lines: dict[str, None] = {}  # ordered, without repeats (a bad default is reported once)
        self.flags: dict[str, str] = {}  # key -> the `--set KEY=VALUE` that wrote it

    def add(self, line: str) -> None:
        for key, flag in self.flags.items():  # a value from the command line: say so after its key
            if line.startswith(key) and line[len(key):len(key) + 1] in (" ", ":"):
                line = f"{key} (--set {flag}){line[len(key):]}"
                break
        self.lines[f"{self.path}: {line}"] = None

    def raise_if_any(self) -> None:
        if self.lines:
            raise ConfigError("\n".join(self.lines), problems=list(self.lines))


@functools.cache
def field_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _required(cls: type) -> set[str]:
    missing = (dataclasses.MISSING,)
    return {f.name for f in fields(cls) if f.default in missing and f.default_factory in missing}


def suggest(name: Any, allowed: Sequence[str]) -> str:
    """For an unknown key: the closest allowed one, or the whole list."""
    close = difflib.get_close_matches(str(name), list(allowed), n=1)
    return f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"


def check_fields(cls: type, raw: Any, key: str, problems: Problems, table: Mapping[tuple[type, str], Rule],
                 skip: tuple[str, ...] = (), required: bool = True) -> dict[str, Any] | None:
    """Type and range of every key meant for dataclass `cls` (nested dataclasses too), with `table`'s rule for each
    (dataclass, field); returns the mapping when all of it is usable."""
    if not isinstance(raw, dict):
        problems.add(f"{key} must be a mapping (key: value lines), got {kind(raw)}")
        return None
    hints, ok = field_hints(cls), True
    allowed = [n for n in hints if n not in skip]
    for name, value in raw.items():
        where = f"{key}.{name}"
        if name not in allowed:
            problems.add(f"{key}: unknown key {show(name)} ({suggest(name, allowed)})")
            ok = False
        elif dataclasses.is_dataclass(hints[name]):
            ok = check_fields(hints[name], {} if value is None else value, where, problems, table) is not None and ok
        else:
            line = check_value(where, value, hints[name], table.get((cls, name)))
            if line:
                problems.add(line)
                ok = False
    for name in sorted(_required(cls) - set(raw) - set(skip)) if required else []:
        problems.add(f"{key}.{name} is required")
        ok = False
    return raw if ok else None
