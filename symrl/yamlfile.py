"""Reading YAML that users hand to symrl (presets, sweep files, a run folder's config.yaml): safe loading, no key
given twice, and bounds on size and alias expansion checked before the memory is taken."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (plain YAML keeps the last one silently,
    so ``PPO: ppo`` then ``PPO: sppo`` would run sppo under the label PPO)."""

    def construct_mapping(self, node, deep=False):
        keys = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in keys:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            keys.add(key)
        return super().construct_mapping(node, deep=deep)


MAX_YAML_BYTES = 1_000_000  # a preset, a sweep file or a config.yaml is a few kilobytes; megabytes are a mistake (or an attack)
MAX_YAML_VALUES = 100_000  # values once aliases (*name) are expanded: a "billion laughs" bomb has ~1e9


def load_yaml_file(text: str) -> Any:
    """A user's YAML text (a preset, a sweep, a config.yaml): safe loading, a key given twice in a mapping is an error, and a file
    over 1 MB, or one whose aliases expand to more than 100,000 values (an alias bomb, which copies and comparisons
    downstream would expand), is refused before it takes the memory."""
    if len(text) > MAX_YAML_BYTES:
        raise yaml.YAMLError(f"the file has {len(text):,} characters; a preset, sweep file or config.yaml may have at most "
                             f"{MAX_YAML_BYTES:,}")
    data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    stack, values = [data], 0
    while stack:  # counts every value as often as aliases repeat it; stops at the limit
        value = stack.pop()
        values += 1
        if values > MAX_YAML_VALUES:
            raise yaml.YAMLError(f"its aliases (*name) expand to more than {MAX_YAML_VALUES:,} values; write the "
                                 "values out, or use fewer nested aliases")
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return data


def read_yaml_file(path: Path) -> Any:
    """:func:`load_yaml_file` of the file at ``path``, refused by its size before it is read."""
    size = Path(path).stat().st_size
    if size > MAX_YAML_BYTES:
        raise yaml.YAMLError(f"the file has {size:,} bytes; a preset, sweep file or config.yaml may have at most "
                             f"{MAX_YAML_BYTES:,}")
    return load_yaml_file(Path(path).read_text())


def yaml_error_line(exc: yaml.YAMLError) -> str:
    """A YAML error in one line: the problem and where it is."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = f" (line {exc.problem_mark.line + 1})" if exc.problem_mark is not None else ""
        return f"{exc.problem}{mark}"
    return str(exc).splitlines()[0]
