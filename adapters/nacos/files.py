"""Config keys inside a Nacos data id: a ``.properties``, YAML or JSON file.

Reading flattens the file to ``{key: value}`` (nested YAML and JSON maps as dotted keys, lists
as ``key[0]``, as Spring reads them). Writing changes one key and leaves the rest alone: in a
properties file every other line, comment and blank line stays byte for byte; YAML and JSON
are rewritten in their order (a YAML file's comments are lost, which docs/nacos.md says).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol


class FileFormat(Protocol):
    """How keys live in one kind of file."""

    name: str

    def read(self, content: str) -> dict[str, str]:
        """Every key and its value. :raises ValueError: the content does not parse."""
        ...

    def write(self, content: str, key: str, value: str | None) -> str:
        """The content with ``key`` set to ``value`` (``None``: removed).

        :raises ValueError: the content does not parse, or the key cannot be written there.
        """
        ...


# --- properties ----------------------------------------------------------------------------

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_KEY_END = re.compile(r"(?<!\\)(?:\\\\)*[=: \t\f]")


class PropertiesFormat:
    """Java ``.properties``: ``key=value``, ``key: value`` or ``key value`` lines, ``#`` and
    ``!`` comments, a trailing backslash continuing a line, backslash escapes."""

    name = "properties"

    def read(self, content: str) -> dict[str, str]:
        return {key: value for key, value, _, _ in _entries(content)}

    def write(self, content: str, key: str, value: str | None) -> str:
        lines = _physical_lines(content)
        matches = [
            (start, end, prefix) for k, _, (start, end), prefix in _entries(content) if k == key
        ]
        if value is None:
            for start, end, _ in reversed(matches):
                del lines[start:end]
            return "".join(lines)
        if not matches:
            newline = _newline(content)
            tail = "" if not content or content.endswith(("\n", "\r")) else newline
            return content + tail + f"{_escape(key, key=True)}={_escape(value)}{newline}"
        start, end, prefix = matches[-1]  # the last one wins, as Java reads the file
        ending = _line_ending(lines[end - 1])
        lines[start:end] = [prefix + _escape(value) + ending]
        return "".join(lines)


def _entries(content: str) -> Iterator[tuple[str, str, tuple[int, int], str]]:
    """``(key, value, (first line, line after), raw text before the value)`` per entry."""
    lines = _physical_lines(content)
    index = 0
    while index < len(lines):
        start = index
        physical = lines[index].rstrip("\r\n")
        stripped = physical.lstrip(" \t\f")
        index += 1
        if not stripped or stripped[0] in "#!":
            continue
        logical = stripped
        while _continues(logical) and index < len(lines):
            logical = logical[:-1] + lines[index].rstrip("\r\n").lstrip(" \t\f")
            index += 1
        if _continues(logical):
            logical = logical[:-1]
        match = _KEY_END.search(logical)
        if match is None:
            raw_key, rest = logical, ""
        else:
            raw_key, rest = logical[: match.end() - 1], logical[match.end() - 1 :]
        separator = re.match(r"[ \t\f]*[=:]?[ \t\f]*", rest)
        assert separator is not None
        value = rest[separator.end() :]
        prefix = physical[: len(physical) - len(stripped)] + raw_key + separator.group()
        yield _unescape(raw_key), _unescape(value), (start, index), prefix


def _physical_lines(content: str) -> list[str]:
    """Lines as Java reads a properties file: ended by \n, \r or \r\n only (not by the
    other characters ``str.splitlines`` takes for line breaks)."""
    return [line for line in _LINE.findall(content) if line]


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\n|\r)|[^\r\n]+$")


def _continues(line: str) -> bool:
    trailing = len(line) - len(line.rstrip("\\"))
    return trailing % 2 == 1


def _unescape(text: str) -> str:
    out: list[str] = []
    position = 0
    while position < len(text):
        char = text[position]
        if char != "\\" or position + 1 >= len(text):
            out.append(char)
            position += 1
            continue
        following = text[position + 1]
        if following == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[position + 2 : position + 6]):
            out.append(chr(int(text[position + 2 : position + 6], 16)))
            position += 6
            continue
        out.append(_ESCAPES.get(following, following))
        position += 2
    return "".join(out)


def _escape(text: str, *, key: bool = False) -> str:
    out = []
    for position, char in enumerate(text):
        if char == "\\":
            out.append("\\\\")
        elif char in "\t\n\r\f":
            out.append("\\" + {"\t": "t", "\n": "n", "\r": "r", "\f": "f"}[char])
        elif char == " " and (key or position == 0):
            out.append("\\ ")
        elif key and char in "=:#!":
            out.append("\\" + char)
        elif ord(char) < 0x20:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out)


def _newline(content: str) -> str:
    return "\r\n" if "\r\n" in content else "\n"


def _line_ending(line: str) -> str:
    return line[len(line.rstrip("\r\n")) :]


# --- YAML and JSON ----------------------------------------------------------------------------


class _TreeFormat:
    """A file of nested maps, addressed by dotted keys."""

    name = ""

    def __init__(
        self, load: Callable[[str], Any], dump: Callable[[Any], str], scalar: Callable[[str], Any]
    ) -> None:
        self._load = load
        self._dump = dump
        self._scalar = scalar

    def read(self, content: str) -> dict[str, str]:
        return dict(_flatten(self._tree(content), ""))

    def write(self, content: str, key: str, value: str | None) -> str:
        tree = self._tree(content)
        parts = key.split(".")
        node = tree
        for part in parts[:-1]:
            child = node.get(part)
            if child is None and value is not None:
                child = node[part] = {}
            if child is None:
                return content  # nothing to remove
            if not isinstance(child, dict):
                raise ValueError(f"{part!r} in {key!r} holds a value, not a map of keys")
            node = child
        if value is None:
            if parts[-1] not in node:
                return content
            del node[parts[-1]]
        else:
            if isinstance(node.get(parts[-1]), dict | list):
                raise ValueError(f"{key!r} holds a map or a list, not one value")
            node[parts[-1]] = self._scalar(value)
        return self._dump(tree)

    def _tree(self, content: str) -> dict[str, Any]:
        if not content.strip():
            return {}
        tree = self._load(content)
        if tree is None:
            return {}
        if not isinstance(tree, dict):
            raise ValueError("the file is not a map of keys at its top")
        return tree


def _flatten(node: Any, prefix: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, Mapping):
        for key, child in node.items():
            yield from _flatten(child, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _flatten(child, f"{prefix}[{index}]")
    elif node is not None:
        yield prefix, _text(node)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _typed(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """A value as the file should hold it: a number or boolean when it reads as one, so a
    gray ``100`` stays a number; anything else a string."""

    def convert(value: str) -> Any:
        try:
            parsed = parse(value)
        except ValueError:
            return value
        if isinstance(parsed, bool | int | float) and _text(parsed) == value:
            return parsed
        return value

    return convert


def _yaml() -> Any:
    """PyYAML, which only YAML files need (``pip install grayrelease[nacos]``)."""
    try:
        import yaml
    except ImportError as exc:  # checked at start-up by the settings, so rare here
        raise ValueError("YAML files need PyYAML: pip install 'grayrelease[nacos]'") from exc
    return yaml


def _yaml_scalar(value: str) -> Any:
    yaml = _yaml()
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from exc


def _yaml_load(content: str) -> Any:
    yaml = _yaml()
    try:
        return yaml.safe_load(content)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from exc


def _yaml_dump(tree: Any) -> str:
    text: str = _yaml().safe_dump(tree, allow_unicode=True, sort_keys=False)
    return text


def _json_load(content: str) -> Any:
    return json.loads(content)  # json.JSONDecodeError is a ValueError


YAML = _TreeFormat(_yaml_load, _yaml_dump, _typed(_yaml_scalar))
YAML.name = "yaml"
JSON = _TreeFormat(
    _json_load,
    lambda tree: json.dumps(tree, ensure_ascii=False, indent=2) + "\n",
    _typed(json.loads),
)
JSON.name = "json"
FORMATS: Mapping[str, FileFormat] = {
    "properties": PropertiesFormat(),
    "yaml": YAML,
    "json": JSON,
}
