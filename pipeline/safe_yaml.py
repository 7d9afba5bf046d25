"""Safe YAML for experiment files and `--set` values: bounded in size and alias expansion, every failure one line.

Knows nothing of what an experiment holds; pipeline/config.py checks the tree this returns.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

MAX_CONFIG_BYTES = 1_000_000  # an experiment is a few KB; anything bigger is the wrong file
MAX_YAML_VALUES = 100_000  # values after alias expansion: a "billion laughs" file stops here, not at MemoryError
_YAML_BASE: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _ConfigLoader(_YAML_BASE):
    """Safe YAML (no Python tags), where `1e-3` is a number and a key given twice is an error, not a silent pick."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"key {key_node.value!r} is given twice",
                                                            key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_ConfigLoader.add_implicit_resolver(  # YAML 1.1 wants a dot in a float; people write lr: 1e-3
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def read_yaml(path: Path) -> Any:
    """The file's YAML, bounded in size and alias expansion; every failure is one ConfigError line."""
    if not path.exists():
        raise ConfigError(f"experiment file {path} not found; see configs/ for examples")
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; give an experiment YAML file (for example configs/demo.yaml)")
    if not path.is_file():
        raise ConfigError(f"{path} is not a regular file; give an experiment YAML file")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES // 1_000_000} MB; "
                          "an experiment is a few KB of YAML")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); "
                          "give an experiment YAML file") from None
    return parse_yaml(text, path)


def parse_yaml(text: str, path: Path) -> Any:
    """`text` as YAML; `path` names it in messages (the file, or `--set KEY=VALUE` for a value)."""
    loader = _ConfigLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, path)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {_yaml_problem(exc, text)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be an experiment file") from None
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """One line: where and what, in the user's terms."""
    if isinstance(exc, yaml.reader.ReaderError):  # libyaml gives a character offset and code, not a mark
        line = text[: exc.position].count("\n") + 1
        char = chr(exc.character) if isinstance(exc.character, int) else exc.character
        return f"not valid YAML at line {line}: {exc.reason} (found {char!r})"
    if not isinstance(exc, yaml.MarkedYAMLError):
        return "not valid YAML: " + " ".join(str(exc).split())
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = exc.problem or ""
    tag = re.search(r"constructor for the tag '([^']*)'", problem)
    if tag:
        shown = tag.group(1).replace("tag:yaml.org,2002:", "!!")
        return f"{where}tag {shown!r} is not allowed; an experiment is plain YAML (mappings, lists, text, numbers)"
    context = f" ({exc.context})" if exc.context else ""
    return f"not valid YAML at {where}{problem}{context}"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node, path: Path) -> None:
    """Refuse recursive aliases and documents whose aliases expand past MAX_YAML_VALUES (counted on the node graph,
    each shared node once, so a bomb is refused in microseconds)."""
    sizes: dict[int, int] = {}
    entered: set[int] = set()  # the ancestors of the node being visited
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        key = id(node)
        if leaving:
            entered.discard(key)
            sizes[key] = min(MAX_YAML_VALUES + 1, 1 + sum(sizes[id(c)] for c in _children(node)))
            continue
        if key in sizes:
            continue
        if key in entered:
            raise ConfigError(f"{path}: line {node.start_mark.line + 1}: an alias refers to a value that contains "
                              "it (recursive alias)")
        entered.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)
    if sizes[id(root)] > MAX_YAML_VALUES:
        raise ConfigError(f"{path}: the YAML expands to more than {MAX_YAML_VALUES:,} values through its aliases "
                          "(*name repeats &name); an experiment needs a few hundred")
