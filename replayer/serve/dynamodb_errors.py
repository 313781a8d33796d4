"""DynamoDB's error answers, as its JSON 1.0 protocol shapes them.

Every error a client of the endpoint sees is one of these: an HTTP status and a body
``{"__type": "<namespace>#<code>", "message": "<text>"}``. The namespaces are DynamoDB's own
(validation errors come from ``com.amazon.coral.validate``, authentication and protocol errors
from ``com.amazon.coral.service``, the rest from ``com.amazonaws.dynamodb.v20120810``), so SDKs
map them to the exception classes they already know (botocore reads the part after ``#``).
"""

from __future__ import annotations

_DYNAMODB = "com.amazonaws.dynamodb.v20120810"
_CORAL = "com.amazon.coral.service"
_VALIDATE = "com.amazon.coral.validate"


class DynamoDBError(Exception):
    """An answer in DynamoDB's error shape; ``message`` is what the client reads."""

    namespace = _DYNAMODB
    status = 400
    # SerializationException spells its message field with a capital M, as DynamoDB does.
    message_field = "message"

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    @property
    def code(self) -> str:
        return type(self).__name__

    def body(self) -> dict[str, str]:
        out = {"__type": f"{self.namespace}#{self.code}"}
        if self.message:
            out[self.message_field] = self.message
        return out


class ValidationException(DynamoDBError):
    """A request DynamoDB would refuse as malformed or inconsistent with the table."""

    namespace = _VALIDATE


class ResourceNotFoundException(DynamoDBError):
    """An unknown table or index — or an instant the archive cannot answer exactly."""


class SerializationException(DynamoDBError):
    """A body that is not the JSON the operation's shapes describe."""

    namespace = _CORAL
    message_field = "Message"


class UnknownOperationException(DynamoDBError):
    """An ``X-Amz-Target`` that names no DynamoDB operation this endpoint serves."""

    namespace = _CORAL


class AccessDeniedException(DynamoDBError):
    """A write: the endpoint is read-only."""

    namespace = _CORAL


class MissingAuthenticationTokenException(DynamoDBError):
    """An unsigned request where signatures are required."""

    namespace = _CORAL


class UnrecognizedClientException(DynamoDBError):
    """A signature by an access key the server was not given."""

    namespace = _CORAL


class InvalidSignatureException(DynamoDBError):
    """A signature that does not verify (wrong secret, altered request, expired)."""

    namespace = _CORAL


class IncompleteSignatureException(DynamoDBError):
    """An ``Authorization`` header that is not a complete SigV4 signature."""

    namespace = _CORAL


class InternalServerError(DynamoDBError):
    """Something failed on the server's side (an archive file unreadable, a bug)."""

    status = 500


def read_only(operation: str) -> AccessDeniedException:
    """The answer to every write: the endpoint never changes anything."""
    return AccessDeniedException(
        f"{operation} is refused: this endpoint is read-only (ddb-replayer serve answers reads "
        "of the archive as the tables were at any instant; it never writes)"
    )
