"""Read YAML files safely into pydantic models, keeping line numbers for every message.

We compose the YAML node graph ourselves (never constructing arbitrary tags), so an
unsafe tag such as `!!python/object` is a reported mistake, not executed code, and
every value keeps the line it came from.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from grader.errors import InputError, InvalidFiles

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Model = TypeVar("Model", bound=BaseModel)
MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 100
"""Lists and mappings nested deeper than this are refused before YAML reads them: libyaml's composer
recurses in C, and tens of thousands of `[` (a 100 KB file) overflow its stack."""
MAX_VALUES = 100_000
"""Values one file may hold once YAML aliases are expanded: far more than any real file, far
fewer than a few nested aliases can stand for."""

_SAFE = yaml.constructor.SafeConstructor()
_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}


@dataclass
class Document:
    """Plain data from one YAML file, with the line of every key and item."""

    path: str
    data: Any
    lines: dict[tuple, int] = field(default_factory=dict)

    def line_of(self, loc: tuple) -> int:
        """Line of the deepest known prefix of a location such as ('parts', 0, 'points')."""
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return 1


def read_text(path: Path) -> str:
    """A regular file's UTF-8 text, at most MAX_FILE_BYTES: a FIFO or a symlink to /dev/zero would
    otherwise block or grow without end."""
    try:
        return read_regular(path, MAX_FILE_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise InputError("no such file", str(path)) from None
    except IsADirectoryError:
        raise InputError("is a folder, not a file", str(path)) from None
    except UnicodeDecodeError:
        raise InputError("is not UTF-8 text", str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", str(path)) from None


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (InputError otherwise); OSError passes through."""
    with open(path, "rb", opener=_nonblocking) as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if stat.S_ISDIR(mode):
            raise InputError("is a folder, not a file", str(path))
        if not stat.S_ISREG(mode):
            raise InputError("is not a regular file", str(path))
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"file is larger than {limit // 1024} KB", str(path))
    return data


def _nonblocking(path: str, flags: int) -> int:
    """Open without waiting: opening a FIFO for reading blocks until a writer comes."""
    return os.open(path, flags | os.O_NONBLOCK)


def parse_yaml(text: str, path: str) -> Document:
    """YAML text to plain data; any syntax error or unsafe tag is an InputError with its line."""
    _check_flow_depth(text, path)
    try:
        node = yaml.compose(text, Loader=Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        hint = _quoting_hint(text, line)
        raise InputError(f"YAML syntax: {exc.problem or exc.context}{hint}", path, line) from None
    except yaml.YAMLError as exc:
        raise InputError(f"YAML syntax: {exc}", path) from None
    doc = Document(path, None)
    if node is not None:
        doc.data = _Walk(doc).plain(node, ())
    return doc


def _check_flow_depth(text: str, path: str) -> None:
    """Refuse `[[[[...` and `{a: {a: ...` nested past MAX_DEPTH (counting brackets inside quoted
    text too: no honest file comes near)."""
    depth = 0
    for line_number, line in enumerate(text.splitlines(), 1):
        for char in line:
            if char in "[{":
                depth += 1
                if depth > MAX_DEPTH:
                    raise InputError(f"lists or mappings nested more than {MAX_DEPTH} deep", path, line_number)
            elif char in "]}":
                depth = max(depth - 1, 0)


_INDICATORS = re.compile(r"^\s*(?:-\s+)?[^\s#:][^:#]*:\s+([|>*&!%@`])")


def _quoting_hint(text: str, line: int | None) -> str:
    """Math such as |x|/x starts with a character YAML reads as syntax: say how to quote it."""
    lines = text.splitlines()
    for number in (line, line - 1 if line else None):
        if number and 0 < number <= len(lines):
            match = _INDICATORS.match(lines[number - 1])
            if match:
                return (f" (line {number}: a value starting with '{match.group(1)}' must be quoted, "
                        f'e.g. dfdx: "|x|/x")')
    return ""


class _Walk:
    """The node graph to plain data. Aliases (*name) share nodes, so a few lines can stand for
    10**10 values (`&a [*a, *a]` nested deep) or for a value inside itself: both are refused
    with their line instead of expanded."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.values = 0
        self.open: set[int] = set()   # the collections being converted: a node among them is inside itself

    def plain(self, node: yaml.Node, loc: tuple) -> Any:
        doc = self.doc
        line = node.start_mark.line + 1
        self.values += 1
        if self.values > MAX_VALUES:
            raise InputError(f"more than {MAX_VALUES} values once its YAML aliases (*name) are expanded", doc.path, line)
        doc.lines.setdefault(loc, line)
        if not isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            if node.tag not in _SCALAR_TAGS:
                raise InputError(f"tag {node.tag} is not allowed (plain YAML only)", doc.path, line)
            try:
                return _SAFE.yaml_constructors[node.tag](_SAFE, node)
            except ValueError as exc:   # e.g. an integer of more than 4300 digits
                raise InputError(f"cannot read this value: {exc}".split(";")[0], doc.path, line) from None
        if id(node) in self.open:
            raise InputError("a YAML alias (*name) refers to a value that contains it", doc.path, line)
        if len(self.open) >= MAX_DEPTH:
            raise InputError(f"lists or mappings nested more than {MAX_DEPTH} deep", doc.path, line)
        self.open.add(id(node))
        try:
            return self._mapping(node, loc) if isinstance(node, yaml.MappingNode) else self._sequence(node, loc)
        finally:
            self.open.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, loc: tuple) -> dict:
        doc = self.doc
        if node.tag != "tag:yaml.org,2002:map":
            raise InputError(f"tag {node.tag} is not allowed (plain YAML only)", doc.path, node.start_mark.line + 1)
        result: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise InputError("YAML merge keys (<<) are not allowed", doc.path, key_node.start_mark.line + 1)
            key = self.plain(key_node, loc + ("<key>",))
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise InputError("mapping keys must be plain words", doc.path, key_node.start_mark.line + 1)
            key = str(key) if not isinstance(key, str) else key
            if key in result:
                raise InputError(f"key '{key}' appears twice", doc.path, key_node.start_mark.line + 1)
            doc.lines[loc + (key,)] = key_node.start_mark.line + 1
            result[key] = self.plain(value_node, loc + (key,))
        return result

    def _sequence(self, node: yaml.SequenceNode, loc: tuple) -> list:
        if node.tag != "tag:yaml.org,2002:seq":
            raise InputError(f"tag {node.tag} is not allowed (plain YAML only)", self.doc.path, node.start_mark.line + 1)
        return [self.plain(item, loc + (i,)) for i, item in enumerate(node.value)]


def validate(doc: Document, model: type[Model]) -> Model:
    """Plain data to a model; every pydantic error becomes FILE:LINE: where: what."""
    try:
        return model.model_validate(doc.data if doc.data is not None else {})
    except ValidationError as exc:
        raise InvalidFiles([_problem(doc, error) for error in exc.errors()]) from None


def _problem(doc: Document, error: dict) -> InputError:
    loc = tuple(part for part in error["loc"] if not (isinstance(part, str) and part.startswith(("function-", "tagged-union"))))
    # a check over the whole exercise (models.LocatedError) names the entry it is about
    loc = _strip_union_branches(loc) + getattr(error.get("ctx", {}).get("error"), "loc", ())
    where = _describe(loc)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = f"unknown key '{loc[-1]}'" if loc else "unknown key"
        where = _describe(loc[:-1])
    elif error["type"] == "missing":
        message = f"missing required key '{loc[-1]}'"
        where = _describe(loc[:-1])
    text = f"{where}: {message}" if where else message
    return InputError(text, doc.path, doc.line_of(loc))


def _strip_union_branches(loc: tuple) -> tuple:
    """pydantic names union branches in locations (`str`, `list[str]`, `int`); drop them."""
    branch_words = ("str", "int", "float", "list[", "dict[", "tuple[", "bool", "is-instance", "literal[", "constrained-str")
    return tuple(p for p in loc if not (isinstance(p, str) and p.startswith(branch_words)))


def _describe(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load(path: Path, model: type[Model]) -> tuple[Model, Document]:
    doc = parse_yaml(read_text(path), str(path))
    return validate(doc, model), doc
