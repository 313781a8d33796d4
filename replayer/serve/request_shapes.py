"""Reading a request's parameters the way DynamoDB's service framework does.

A parameter of the wrong JSON type is a ``SerializationException`` (``STRING_VALUE cannot be
converted to Integer``); a missing required one, or one outside its constraints, a
``ValidationException`` — constraint failures collected and reported together, as DynamoDB
does: ``2 validation errors detected: Value '0' at 'limit' failed to satisfy constraint:
Member must have value greater than or equal to 1; …``. Unknown parameters are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from replayer.serve.dynamodb_errors import SerializationException, ValidationException


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE_VALUE" if value else "FALSE_VALUE"
    if isinstance(value, int):
        return "NUMBER_VALUE"
    if isinstance(value, float):
        return "NUMBER_VALUE" if value.is_integer() else "DECIMAL_VALUE"
    return "STRING_VALUE"


class Request:
    """One operation's JSON body; the accessors check types, :meth:`done` the constraints."""

    def __init__(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise SerializationException("Start of structure or map found where not expected")
        self.body = body
        self.problems: list[str] = []

    def has(self, name: str) -> bool:
        return self.body.get(name) is not None

    def constraint(self, name: str, value: Any, message: str) -> None:
        shown = "null" if value is None else f"'{value}'"
        self.problems.append(
            f"Value {shown} at '{_lower_first(name)}' failed to satisfy constraint: {message}"
        )

    def required(self, name: str) -> None:
        if self.body.get(name) is None:
            raise ValidationException(
                f"The parameter '{name}' is required but was not present in the request"
            )

    def string(
        self,
        name: str,
        *,
        required: bool = False,
        choices: Sequence[str] | None = None,
        min_length: int | None = None,
        max_length: int | None = None,
    ) -> str | None:
        if required:
            self.required(name)
        value = self.body.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            if isinstance(value, dict):
                raise SerializationException("Start of structure or map found where not expected")
            if isinstance(value, list):
                raise SerializationException("Unrecognized collection type class java.lang.String")
            raise SerializationException(f"{_kind(value)} cannot be converted to String")
        if choices is not None and value not in choices:
            self.constraint(
                name, value, f"Member must satisfy enum value set: [{', '.join(choices)}]"
            )
        if min_length is not None and len(value) < min_length:
            self.constraint(
                name, value, f"Member must have length greater than or equal to {min_length}"
            )
        if max_length is not None and len(value) > max_length:
            self.constraint(
                name, value, f"Member must have length less than or equal to {max_length}"
            )
        return value

    def integer(
        self, name: str, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        value = self.body.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            if isinstance(value, dict):
                raise SerializationException("Start of structure or map found where not expected")
            raise SerializationException(f"{_kind(value)} cannot be converted to Integer")
        number = int(value)
        if minimum is not None and number < minimum:
            self.constraint(
                name, number, f"Member must have value greater than or equal to {minimum}"
            )
        if maximum is not None and number > maximum:
            self.constraint(name, number, f"Member must have value less than or equal to {maximum}")
        return number

    def boolean(self, name: str) -> bool | None:
        value = self.body.get(name)
        if value is None:
            return None
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            word = value.upper()
            if word in ("TRUE", "1", "YES"):
                return True
            if word in ("FALSE", "0", "NO"):
                return False
            raise SerializationException("Unexpected token received from parser")
        if isinstance(value, int | float):
            raise SerializationException(f"{_kind(value)} cannot be converted to Boolean")
        raise SerializationException("Start of structure or map found where not expected")

    def mapping(self, name: str, *, required: bool = False) -> dict[str, Any] | None:
        if required:
            self.required(name)
        value = self.body.get(name)
        if value is None:
            return None
        if isinstance(value, list):
            raise SerializationException(
                "Unrecognized collection type java.util.Map<java.lang.String, "
                "com.amazonaws.dynamodb.v20120810.AttributeValue>"
            )
        if not isinstance(value, dict):
            raise SerializationException("Unexpected field type")
        return value

    def strings(self, name: str) -> list[str] | None:
        value = self.body.get(name)
        if value is None:
            return None
        if not isinstance(value, list):
            if isinstance(value, dict):
                raise SerializationException("Start of structure or map found where not expected")
            raise SerializationException("Unexpected field type")
        for member in value:
            if not isinstance(member, str):
                raise SerializationException(f"{_kind(member)} cannot be converted to String")
        if not value:
            self.constraint(name, "[]", "Member must have length greater than or equal to 1")
        return value

    def done(self) -> None:
        """Report the constraint failures found so far, DynamoDB-style."""
        if self.problems:
            count = len(self.problems)
            raise ValidationException(
                f"{count} validation error{'s' if count > 1 else ''} detected: "
                + "; ".join(self.problems[:10])
            )


SELECT_VALUES = ("ALL_ATTRIBUTES", "ALL_PROJECTED_ATTRIBUTES", "SPECIFIC_ATTRIBUTES", "COUNT")
CONSUMED_CAPACITY_VALUES = ("INDEXES", "TOTAL", "NONE")


def table_name(request: Request, name: str = "TableName") -> str:
    """A table name (a ``name@TIME`` or an ARN is longer than DynamoDB's 255 characters)."""
    value = request.string(name, required=True, min_length=3, max_length=1024)
    assert value is not None
    return value
