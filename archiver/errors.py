"""The archiver's exceptions: the format's (re-exported) and those about AWS calls."""

from __future__ import annotations

from typing import Any

from archiver.format.errors import (
    EXIT_DIFFERENCES,
    EXIT_FAILURE,
    EXIT_NEW_GAP,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    ArchiveOwnedElsewhere,
    ArchiverError,
    CorruptArchive,
    UsageError,
)

__all__ = [
    "EXIT_DIFFERENCES",
    "EXIT_FAILURE",
    "EXIT_NEW_GAP",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "ArchiveOwnedElsewhere",
    "ArchiverError",
    "AwsError",
    "CorruptArchive",
    "StreamNotEnabled",
    "TableNotFound",
    "UnsupportedStreamView",
    "UsageError",
    "client_error_code",
    "translate_client_error",
]


class TableNotFound(UsageError):
    """The named table does not exist."""


class StreamNotEnabled(UsageError):
    """The table has no DynamoDB stream to archive."""


class UnsupportedStreamView(UsageError):
    """The stream's view type lacks new images (KEYS_ONLY, OLD_IMAGE): replay needs them."""


class AwsError(ArchiverError):
    """An AWS call failed in a way the archiver does not handle itself."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


def client_error_code(exc: BaseException) -> str:
    """The ``Error.Code`` of a botocore ``ClientError`` (empty for anything else)."""
    response: Any = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def translate_client_error(exc: BaseException, what: str) -> ArchiverError:
    """Turn a botocore ``ClientError`` into the archiver error a user can act on.

    Dispatches on ``Error.Code`` only (never on message text) and keeps the original
    exception as ``__cause__`` for ``--debug``.
    """
    code = client_error_code(exc)
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", exc))
    err: ArchiverError
    if code == "ResourceNotFoundException":
        err = TableNotFound(f"{what}: not found ({message})")
    elif code in {"ValidationException", "InvalidParameterValue"}:
        err = UsageError(f"{what}: {message}")
    elif code in {"AccessDeniedException", "UnrecognizedClientException"}:
        err = AwsError(f"{what}: access denied ({message})", code)
    else:
        err = AwsError(f"{what}: {code or type(exc).__name__}: {message}", code)
    err.__cause__ = exc
    return err
