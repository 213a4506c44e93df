"""YAML for configs: safe loading that refuses duplicate keys, errors with file, line and column.

PyYAML's ``safe_load`` keeps the last of two equal keys in a mapping without a word, so a config
with ``lr`` written twice silently trains with the second value. :func:`load_yaml` refuses it,
naming the key and both lines; any YAML syntax error becomes one line
``FILE, line L, column C: problem`` (PyYAML's own message spans several lines). Aliases may not
expand a document past :data:`MAX_NODES` nodes (a "billion laughs" file is a few lines that
expand to 10^9), and nesting too deep for the parser is an error, not a RecursionError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from marginface.errors import ConfigError

__all__ = ["load_yaml", "MAX_NODES"]

MAX_NODES = 1_000_000  # nodes of the document with every alias expanded


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes of ``node`` with aliases expanded (memoised per node: linear in the file)."""
    key = id(node)
    if key not in memo:
        memo[key] = 0  # a node that contains itself counts once
        children: list = []
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        memo[key] = min(MAX_NODES + 1, 1 + sum(_expanded_size(c, memo) for c in children))
    return memo[key]


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader whose mappings refuse a key written twice."""

    def construct_document(self, node: yaml.Node) -> object:
        if _expanded_size(node, {}) > MAX_NODES:
            raise yaml.constructor.ConstructorError(
                None, None, f"the aliases expand to more than {MAX_NODES} nodes", node.start_mark)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
                seen.setdefault(key, line)
            except TypeError:  # an unhashable key: PyYAML reports it below
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first})",
                    key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, source: str | Path = "<string>") -> Any:
    """Parse ``text`` (from file ``source``); a ConfigError names the line of any problem."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark else source
        problem = " ".join(f"{error.context or ''} {error.problem or ''}".split())
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML: {' '.join(str(error).split())}") from None
    except RecursionError:
        raise ConfigError(f"{source}: not valid YAML: nested too deeply") from None
