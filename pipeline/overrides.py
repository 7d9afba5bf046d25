"""`--set KEY=VALUE`: Hydra-style changes to an experiment's YAML tree, applied before it is checked.

This module imports no config: pipeline/config.py describes its files with a Layout and calls apply_overrides,
so imports run one way (config -> overrides -> checks, safe_yaml).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.checks import Problems, field_hints, suggest
from pipeline.errors import ConfigError
from pipeline.safe_yaml import parse_yaml


def _nothing_replaced(mapping: dict, name: str) -> None:
    return None


@dataclass(frozen=True)
class Layout:
    """What `--set` may name in an experiment file: a `runs` list of named runs and `defaults`, both holding settings
    grouped by concern (or flat), plus other top-level blocks and single values."""

    groups: Mapping[str, type]  # a run's settings by concern: group name -> its dataclass; flat names are its fields
    run_keys: tuple[str, ...]  # a run's own keys besides its settings
    blocks: Mapping[str, type]  # other top-level mappings and their dataclass: "data" -> DataConfig
    scalars: tuple[str, ...]  # top-level single values: "name", "store"
    replaced: Callable[[dict, str], None] = _nothing_replaced  # after a run's setting is set: drop what it replaces

    @property
    def group_of(self) -> dict[str, str]:
        """Flat setting name -> its group."""
        return {f.name: group for group, cls in self.groups.items() for f in dataclasses.fields(cls)}


def apply_overrides(raw: dict, overrides: Sequence[str], layout: Layout, problems: Problems) -> dict:
    """Hydra-style `KEY=VALUE`s into a copy of the YAML tree, after the file and before any check: `data.resize=96`,
    `defaults.lr=0.01`, `runs.<run name>.epochs=1`, grouped keys too (`runs.a.model.backbone=resnet18`); VALUE is
    read as YAML (`[flip]`, `1e-3`, `null`). A bad value is then refused as if written in the file, naming the flag."""
    raw = copy.deepcopy(raw)
    for text in overrides:
        key, eq, value_text = text.partition("=")
        if not eq or not key:
            problems.add(f"--set {text}: write KEY=VALUE, e.g. runs.<run name>.epochs=1 or data.resize=96")
            continue
        try:
            value = parse_yaml(value_text, Path(f"--set {text}"))
        except ConfigError as exc:
            problems.add(str(exc))
            continue
        placed = _place(raw, key, value, text, layout, problems)
        if placed:
            problems.flags[placed] = text
    return raw


def _place(raw: dict, key: str, value: Any, text: str, layout: Layout, problems: Problems) -> str | None:
    """Put one override into `raw`; returns the key as problems name it (`runs[0].model.backbone`), or None."""
    section, _, rest = key.partition(".")
    if section == "runs":
        runs = raw.get("runs")
        names = [r.get("name") for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []
        name = max((n for n in names if isinstance(n, str) and rest.startswith(f"{n}.")), key=len, default=None)
        if name is None or not isinstance(runs, list):
            wanted = rest.split(".")[0]
            close = difflib.get_close_matches(wanted, [str(n) for n in names], n=3)
            hint = f"did you mean {', '.join(map(repr, close))}?" if close else f"runs: {names}"
            problems.add(f"--set {text}: no run named {wanted!r} ({hint}); write runs.<run name>.<key>=VALUE")
            return None
        i = names.index(name)
        return _place_setting(runs[i], rest[len(name) + 1:], value, f"runs[{i}]", text, layout, problems,
                              run=True)
    if section == "defaults":
        if not isinstance(raw.get("defaults"), dict):
            raw["defaults"] = {}
        return _place_setting(raw["defaults"], rest, value, "defaults", text, layout, problems, run=False)
    if section in layout.blocks and rest:
        cls, parts = layout.blocks[section], rest.split(".")
        if not isinstance(raw.get(section), dict):
            raw[section] = {}
        node = raw[section]
        for depth, part in enumerate(parts):
            hints, last = field_hints(cls), depth == len(parts) - 1
            if part not in hints or not (last or dataclasses.is_dataclass(hints[part])):
                problems.add(f"--set {text}: unknown key {'.'.join([section, *parts[:depth + 1]])!r} "
                             f"({suggest(part, list(hints))})")
                return None
            if not last:
                cls = hints[part]
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
        node[parts[-1]] = value
        return key
    if section in layout.scalars and not rest:
        raw[section] = value
        return key
    problems.add(f"--set {text}: unknown key {key!r}; start it with runs.<run name>., defaults., "
                 f"{' or '.join(f'{block}.' for block in layout.blocks)}")
    return None


def _place_setting(mapping: Any, key: str, value: Any, where: str, text: str, layout: Layout, problems: Problems,
                   run: bool) -> str | None:
    """A run's or the defaults' setting, by its flat or grouped name; it replaces the value however the file wrote
    it (flat or grouped), so the two never clash."""
    parts = key.split(".")
    group_of = layout.group_of
    valid = [*(layout.run_keys if run else ()), *group_of, *layout.groups, *(f"{g}.{n}" for n, g in group_of.items())]
    if not isinstance(mapping, dict) or key not in valid:
        problems.add(f"--set {text}: unknown key {key!r} in {where} ({suggest(key, valid)})")
        return None
    name = parts[-1]
    group = group_of.get(name)
    mapping.pop(name, None)
    if group and isinstance(mapping.get(group), dict):
        mapping[group].pop(name, None)
    if len(parts) == 2:
        if not isinstance(mapping.get(group), dict):
            mapping[group] = {}
        mapping[group][name] = value
    else:
        mapping[name] = value
    if run:
        layout.replaced(mapping, name)
    return f"{where}.{key}"
