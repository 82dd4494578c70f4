"""YAML as a recipe's author means it: YAML 1.2's plain values, no duplicate keys, and where each key stands."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import yaml


class YamlLoader(yaml.SafeLoader):
    """SafeLoader reading plain values as YAML 1.2's core schema does, so what a user types is what arrives.

    PyYAML follows YAML 1.1: `no`, `off` and `yes` become booleans (`eval_strategy: no` turned into False, which
    TrainingArguments rejects), `1:30` an integer 90, and `3e-5` stays a string. Here only true/false are booleans,
    numbers are plain decimal (or 0x/0o), `3e-5` is a float, dates stay text. A key given twice in one mapping is
    an error, not a silent overwrite of the first.
    """

    yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, Any]]]] = {
        first: [
            (tag, regexp)
            for tag, regexp in resolvers
            if tag.rsplit(":", 1)[-1] not in ("bool", "int", "float", "timestamp")
        ]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (first on line {seen[key]}); keep one", key_node.start_mark
                )
            if isinstance(key, (str, int, float, bool)):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        """YAML 1.2's integers: `017` is seventeen (1.1 reads octal 15); 0o and 0x as written."""
        text = str(self.construct_scalar(node))
        return int(text, 0) if text[:2] in ("0o", "0x") else int(text)


for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
):
    YamlLoader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first))
YamlLoader.add_constructor("tag:yaml.org,2002:int", YamlLoader.construct_yaml_int)


def safe_load(text: str) -> Any:
    """`yaml.safe_load` with the float fix above: only plain YAML types, never Python objects."""
    loader = YamlLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def line_of(text: str | None, dotted: list[str | int]) -> int | None:
    """1-based YAML line of a dotted key, or of its nearest existing parent."""
    if text is None:
        return None
    try:
        node = yaml.compose(text, Loader=YamlLoader)
    except yaml.YAMLError:
        return None
    line = None
    for part in dotted:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part):
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line
