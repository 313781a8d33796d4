"""The archiver's exceptions, each carrying the CLI exit code DESIGN.md assigns to it."""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DIFFERENCES = 3
EXIT_REFUSED = 4
EXIT_NEW_GAP = 5


class ArchiverError(Exception):
    """Base of every error the archiver reports to a user as one line."""

    exit_code: int = EXIT_FAILURE


class UsageError(ArchiverError):
    """Bad input: a malformed flag, time, URL or key."""

    exit_code = EXIT_USAGE


class TableNotFound(UsageError):
    """The named table does not exist."""


class StreamNotEnabled(UsageError):
    """The table has no DynamoDB stream to archive."""


class UnsupportedStreamView(UsageError):
    """The stream's view type lacks new images (KEYS_ONLY, OLD_IMAGE): replay needs them."""


class ArchiveOwnedElsewhere(UsageError):
    """The archive already holds this table name for another account or region."""


class CorruptArchive(ArchiverError):
    """A file in the archive does not match what its manifest or name promises."""

    exit_code = EXIT_USAGE


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
