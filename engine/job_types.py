"""Typed jobs: ``JobTypes`` maps job names to a schema (a dataclass, or a pydantic model when
pydantic is installed), shared by ``Queue`` and ``Worker``.

``Queue.add`` checks the data of a registered name and stores it as plain JSON, so a bad field
is refused before anything is written; the worker rebuilds the typed object and hands it to
the processor as ``job.typed``. Data that no longer matches (the schema changed while the job
waited) fails the job at once, without retries. Names without a schema are not checked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

from .dataclass_schema import UnsupportedType, schema_of
from .errors import InvalidJobData, InvalidJobOptions
from .job import Job
from .processing import Outcome, failure


class _Schema(Protocol):
    """What the registry needs from a schema: JSON in, typed object out, and back."""

    name: str

    def load(self, data: Any) -> Any: ...

    def dump(self, value: Any) -> Any: ...


class _DataclassAdapter:
    def __init__(self, cls: type) -> None:
        self.name = cls.__name__
        self._schema = schema_of(cls)

    def load(self, data: Any) -> Any:
        return self._schema.load(data)

    def dump(self, value: Any) -> Any:
        return self._schema.dump(value)


def _is_pydantic_model(schema: type) -> bool:
    return callable(getattr(schema, "model_validate", None)) and callable(
        getattr(schema, "model_dump", None)
    )


def _pydantic_location(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else f"{path}.{part}" if path else part
    return path


class _PydanticAdapter:
    """A pydantic (v2) model, used without importing pydantic: it is an optional dependency."""

    def __init__(self, model: type) -> None:
        self.name = model.__name__
        self._model: Any = model

    def load(self, data: Any) -> Any:
        try:
            return self._model.model_validate(data)
        except ValueError as exc:  # pydantic.ValidationError is a ValueError
            errors = exc.errors() if callable(getattr(exc, "errors", None)) else []  # type: ignore[attr-defined]
            if not errors:
                raise InvalidJobData(f"data: {exc}") from None
            first = errors[0]
            where = _pydantic_location(tuple(first.get("loc", ())))
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            prefix = f"field {where!r}" if where else "data"
            raise InvalidJobData(
                f"{prefix}: {first.get('msg', exc)}{more}", where or None
            ) from None

    def dump(self, value: Any) -> Any:
        return self.load(value).model_dump(mode="json")


def _adapter(schema: object) -> _Schema:
    if isinstance(schema, type) and dataclasses.is_dataclass(schema):
        try:
            return _DataclassAdapter(schema)
        except UnsupportedType as exc:
            raise InvalidJobOptions(f"schema {schema.__name__} cannot be used: {exc}") from None
    if isinstance(schema, type) and _is_pydantic_model(schema):
        return _PydanticAdapter(schema)
    raise InvalidJobOptions(
        f"schema={schema!r} is invalid: expected a dataclass or a pydantic model class"
    )


class JobTypes:
    """Job name -> schema. ``types.register("send-email", EmailJob)``, then pass ``types=`` to
    both ``Queue`` and ``Worker`` (or to ``corral worker --types MODULE:NAME``)."""

    def __init__(self, schemas: Mapping[str, type] | None = None) -> None:
        self._schemas: dict[str, tuple[type, _Schema]] = {}
        for name, schema in (schemas or {}).items():
            self.register(name, schema)

    def register(self, name: str, schema: type) -> type:
        """Check the data of jobs named ``name`` against ``schema``; returns ``schema``.
        Registering another schema for a name already taken is refused."""
        if not isinstance(name, str) or not name or len(name) > 256 or not name.isprintable():
            raise InvalidJobOptions(
                f"job name {name!r} is invalid: expected 1-256 printable characters"
            )
        known = self._schemas.get(name)
        if known is not None:
            if known[0] is schema:
                return schema
            raise InvalidJobOptions(
                f"job name {name!r} already has schema {known[0].__name__}; "
                f"cannot register {getattr(schema, '__name__', schema)!r} too"
            )
        self._schemas[name] = (schema, _adapter(schema))
        return schema

    def schema(self, name: str) -> type | None:
        """The schema registered for ``name``, or None."""
        known = self._schemas.get(name)
        return known[0] if known else None

    def __contains__(self, name: object) -> bool:
        return name in self._schemas

    def __len__(self) -> int:
        return len(self._schemas)

    def dump(self, name: str, data: Any) -> Any:
        """``data`` as plain JSON, checked against ``name``'s schema (unchanged if it has none).
        ``data`` may be an instance of the schema or a dict of its fields."""
        known = self._schemas.get(name)
        if known is None:
            return data
        try:
            return known[1].dump(data)
        except InvalidJobData as exc:
            raise InvalidJobData(
                f"{exc} (data of job {name!r}, schema {known[1].name})", exc.field
            ) from None

    def load(self, name: str, data: Any) -> Any:
        """The typed object for stored ``data`` of a job named ``name`` (None if no schema)."""
        known = self._schemas.get(name)
        if known is None:
            return None
        try:
            return known[1].load(data)
        except InvalidJobData as exc:
            raise InvalidJobData(
                f"{exc} (data of job {name!r} no longer matches schema {known[1].name})",
                exc.field,
            ) from None

    def bind(self, job: Job) -> Job:
        """``job`` with ``typed`` set, when its name has a schema; ``InvalidJobData`` if its
        data does not match."""
        if job.name not in self._schemas:
            return job
        return dataclasses.replace(job, typed=self.load(job.name, job.data))


def bind_type(types: JobTypes, job: Job) -> tuple[Job, Outcome | None]:
    """For the worker: ``job`` with ``typed`` set, or the job and the final failure to record
    when its data no longer matches its schema (not retried: the data will not change)."""
    try:
        return types.bind(job), None
    except InvalidJobData as exc:
        return job, failure(job, exc, None)
