"""Checking job data against a dataclass, both ways: a dataclass instance (or a dict) to plain
JSON for ``add``, and stored JSON back to an instance for the worker.

Fields may be ``str``, ``int``, ``float``, ``bool``, ``None``, ``Any``, ``datetime``/``date``
(ISO 8601 strings), an ``Enum`` (by value), ``Literal[...]``, unions (``X | None``),
``list``/``tuple``/``set`` of one of these, ``dict[str, ...]`` and nested dataclasses. Anything
else is refused when the schema is registered, not when a job is added. ``int`` does not take
``True``, ``str`` does not take ``5``: the check is strict, so what a producer sends is what the
processor gets.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from .errors import InvalidJobData

Convert = Callable[[Any, str], Any]  # (value, path) -> converted value; raises InvalidJobData


class UnsupportedType(TypeError):
    """A dataclass field's type cannot be checked or stored as JSON."""


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _bad(path: str, expected: str, value: Any) -> InvalidJobData:
    return InvalidJobData(f"field {path!r}: expected {expected}, got {_describe(value)}", path)


def _join(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    return f"{path}.{part}" if path else part


class _Field:
    """How one type is checked: ``load`` turns JSON into Python, ``dump`` Python into JSON."""

    def __init__(self, expected: str, load: Convert, dump: Convert) -> None:
        self.expected = expected
        self.load = load
        self.dump = dump


def _scalar(kind: type, expected: str) -> _Field:
    def check(value: Any, path: str) -> Any:
        if kind is int and isinstance(value, bool):
            raise _bad(path, expected, value)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind):
            raise _bad(path, expected, value)
        return value

    return _Field(expected, check, check)


def _any() -> _Field:
    def same(value: Any, path: str) -> Any:
        return value

    return _Field("any JSON value", same, same)


def _none() -> _Field:
    def check(value: Any, path: str) -> Any:
        if value is not None:
            raise _bad(path, "null", value)
        return None

    return _Field("null", check, check)


def _temporal(kind: type[date]) -> _Field:
    expected = f"an ISO 8601 {kind.__name__} string"

    def load(value: Any, path: str) -> Any:
        if isinstance(value, str):
            try:
                return kind.fromisoformat(value)
            except ValueError:
                pass
        raise _bad(path, expected, value)

    def dump(value: Any, path: str) -> Any:
        if isinstance(value, str):
            return load(value, path).isoformat()
        if kind is date and isinstance(value, datetime):
            raise _bad(path, "a date", value)
        if not isinstance(value, kind):
            raise _bad(path, f"a {kind.__name__}", value)
        return value.isoformat()

    return _Field(expected, load, dump)


def _enum(kind: type[enum.Enum]) -> _Field:
    values = [m.value for m in kind]
    expected = f"one of {values!r} ({kind.__name__})"

    def load(value: Any, path: str) -> Any:
        if isinstance(value, kind):
            return value
        try:
            return kind(value)
        except (ValueError, TypeError):
            raise _bad(path, expected, value) from None

    def dump(value: Any, path: str) -> Any:
        return load(value, path).value

    return _Field(expected, load, dump)


def _literal(options: tuple[Any, ...]) -> _Field:
    expected = f"one of {list(options)!r}"

    def check(value: Any, path: str) -> Any:
        if not any(value == o and type(value) is type(o) for o in options):
            raise _bad(path, expected, value)
        return value

    return _Field(expected, check, check)


def _union(members: list[_Field]) -> _Field:
    expected = " or ".join(m.expected for m in members)

    def attempt(which: str) -> Convert:
        def convert(value: Any, path: str) -> Any:
            deepest: InvalidJobData | None = None
            for member in members:
                try:
                    return getattr(member, which)(value, path)
                except InvalidJobData as exc:
                    if (
                        exc.field
                        and exc.field != path
                        and (deepest is None or len(exc.field) > len(deepest.field or ""))
                    ):
                        deepest = exc  # it got inside the value: its error says more
            raise deepest or _bad(path, expected, value)

        return convert

    return _Field(expected, attempt("load"), attempt("dump"))


def _sequence(item: _Field, make: Callable[[list[Any]], Any]) -> _Field:
    expected = f"a list of {item.expected}"

    def convert(which: str, out: Callable[[list[Any]], Any]) -> Convert:
        def run(value: Any, path: str) -> Any:
            if isinstance(value, str | bytes | Mapping) or not isinstance(
                value, list | tuple | set | frozenset
            ):
                raise _bad(path, expected, value)
            step = getattr(item, which)
            return out([step(v, _join(path, i)) for i, v in enumerate(value)])

        return run

    return _Field(expected, convert("load", make), convert("dump", list))


def _fixed_tuple(items: list[_Field]) -> _Field:
    expected = f"a list of {len(items)} items ({', '.join(i.expected for i in items)})"

    def convert(which: str, out: Callable[[list[Any]], Any]) -> Convert:
        def run(value: Any, path: str) -> Any:
            if not isinstance(value, list | tuple) or len(value) != len(items):
                raise _bad(path, expected, value)
            return out(
                [
                    getattr(f, which)(v, _join(path, i))
                    for i, (f, v) in enumerate(zip(items, value, strict=True))
                ]
            )

        return run

    return _Field(expected, convert("load", tuple), convert("dump", list))


def _mapping(item: _Field) -> _Field:
    expected = f"an object of {item.expected}"

    def convert(which: str) -> Convert:
        def run(value: Any, path: str) -> Any:
            if not isinstance(value, Mapping):
                raise _bad(path, expected, value)
            out = {}
            for key, v in value.items():
                if not isinstance(key, str):
                    raise _bad(_join(path, str(key)), "a string key", key)
                out[key] = getattr(item, which)(v, _join(path, key))
            return out

        return run

    return _Field(expected, convert("load"), convert("dump"))


def _field_for(hint: Any, where: str) -> _Field:  # noqa: C901 - one branch per kind of type
    """The checker for one type annotation; ``UnsupportedType`` names ``where`` if none fits."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return _any()
    if hint is None or hint is type(None):
        return _none()
    if hint in (str, int, float, bool):
        return _scalar(hint, hint.__name__)
    if hint in (datetime, date):
        return _temporal(hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return schema_of(hint).as_field()
    if origin is typing.Literal:
        return _literal(args)
    if origin is typing.Union or origin is types.UnionType:
        return _union([_field_for(a, where) for a in args])
    if hint in (list, set, frozenset, tuple) or origin in (list, set, frozenset):
        kind = origin or hint
        item = _field_for(args[0], where) if args else _any()
        return _sequence(item, kind)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _sequence(_field_for(args[0], where), tuple)
        return _fixed_tuple([_field_for(a, where) for a in args])
    if hint is dict or origin in (dict, Mapping):
        if args and args[0] is not str:
            raise UnsupportedType(f"{where}: dict keys must be str to be stored as JSON")
        return _mapping(_field_for(args[1], where) if args else _any())
    raise UnsupportedType(
        f"{where}: type {hint!r} cannot be checked or stored as JSON (use str, int, float, "
        "bool, datetime, an Enum, Literal, list, dict[str, ...] or a dataclass; or a pydantic "
        "model)"
    )


_SCHEMAS: dict[type, DataclassSchema] = {}


def schema_of(cls: type) -> DataclassSchema:
    """The schema of dataclass ``cls``, built once (a dataclass that contains itself works)."""
    schema = _SCHEMAS.get(cls)
    if schema is None:
        schema = DataclassSchema(cls)
    return schema


class DataclassSchema:
    """Checks and converts job data for one dataclass (fields resolved once, at creation)."""

    def __init__(self, cls: type) -> None:
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise UnsupportedType(f"{cls!r} is not a dataclass")
        self.cls = cls
        try:
            hints = typing.get_type_hints(cls, localns={cls.__name__: cls})
        except NameError as exc:
            raise UnsupportedType(
                f"{cls.__name__}: cannot resolve a field's type ({exc})"
            ) from None
        self._fields: dict[str, _Field] = {}
        self._required: set[str] = set()
        _SCHEMAS[cls] = self  # before the fields, so a field of this very type finds it
        try:
            self._resolve(cls, hints)
        except BaseException:
            del _SCHEMAS[cls]
            raise

    def _resolve(self, cls: type, hints: dict[str, Any]) -> None:
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            self._fields[f.name] = _field_for(hints[f.name], f"{cls.__name__}.{f.name}")
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                self._required.add(f.name)

    def load(self, data: Any, path: str = "") -> Any:
        """An instance built from JSON ``data``; ``InvalidJobData`` names the first bad field."""
        if isinstance(data, self.cls):
            data = self.dump(data, path)
        if not isinstance(data, Mapping):
            raise InvalidJobData(
                f"{f'field {path!r}: ' if path else ''}expected an object with the fields of "
                f"{self.cls.__name__}, got {_describe(data)}",
                path or None,
            )
        unknown = [k for k in data if k not in self._fields]
        if unknown:
            where = _join(path, str(unknown[0]))
            raise InvalidJobData(f"field {where!r}: not a field of {self.cls.__name__}", where)
        missing = [n for n in self._fields if n in self._required and n not in data]
        if missing:
            where = _join(path, missing[0])
            raise InvalidJobData(f"field {where!r}: missing", where)
        values = {k: self._fields[k].load(v, _join(path, k)) for k, v in data.items()}
        return self.cls(**values)

    def dump(self, value: Any, path: str = "") -> dict[str, Any]:
        """Plain JSON for an instance (or a dict, checked by building an instance first)."""
        if not isinstance(value, self.cls):
            value = self.load(value, path)
        return {
            name: f.dump(getattr(value, name), _join(path, name))
            for name, f in self._fields.items()
        }

    def as_field(self) -> _Field:
        """This dataclass as the type of a field of another one."""
        return _Field(f"a {self.cls.__name__} object", self.load, self.dump)
