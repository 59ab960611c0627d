"""Reading user config files (agent graphs, run configs) safely: size, encoding, YAML bombs.

A config is small text. Anything else is refused in well under a second with a one-line error that
names the file: a file over :data:`MAX_BYTES`, bytes that are not UTF-8, YAML nested deeper than
:data:`MAX_DEPTH`, or aliases that would expand to more than :data:`MAX_VALUES` values (the
"billion laughs" bomb: a few lines of anchors that expand exponentially when read).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from agentsearch.errors import UserError

MAX_BYTES = 1_000_000
MAX_DEPTH = 64
MAX_VALUES = 100_000


def read_text(path: str | Path, error: type[UserError] = UserError) -> str:
    """The file's text; ``error`` (one line naming the file) when it is missing, too big or not UTF-8."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise error(f"{path}: is a directory, expected a YAML or JSON file")
        if size > MAX_BYTES:
            raise error(f"{path}: {size:,} bytes; a config file is at most {MAX_BYTES:,} bytes")
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start})") from None


def load_yaml(text: str, source: str, error: type[UserError] = UserError) -> Any:
    """Parse YAML (or JSON) safely; ``error`` names ``source`` (and the line) for malformed or hostile input."""
    if len(text) > MAX_BYTES:
        raise error(f"{source}: {len(text):,} characters; a config is at most {MAX_BYTES:,}")
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise error(f"{source}: nested deeper than {MAX_DEPTH} levels") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise error(f"{source}{where}: malformed YAML/JSON: {problem}") from None
        if node is None:
            return None
        _check_size(node, source, error)
        try:
            return loader.construct_document(node)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            raise error(f"{source}{where}: malformed YAML/JSON: {getattr(exc, 'problem', None) or exc}") from None
    finally:
        loader.dispose()


def _check_size(root: yaml.Node, source: str, error: type[UserError]) -> None:
    """Refuse documents nested too deep, or whose aliases expand to too many values (no recursion: the
    node graph is walked with an explicit stack; shared (aliased) nodes are measured once)."""
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            kids = _children(node)
            sizes[key] = 1 + sum(sizes[id(k)] for k in kids)
            depths[key] = 1 + max((depths[id(k)] for k in kids), default=0)
            if depths[key] > MAX_DEPTH:
                raise error(f"{source}: nested deeper than {MAX_DEPTH} levels")
            if sizes[key] > MAX_VALUES:
                raise error(f"{source}: its aliases expand to more than {MAX_VALUES:,} values (a YAML bomb?)")
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise error(f"{source}: a recursive YAML alias")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node) if id(k) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []
