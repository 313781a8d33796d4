"""The archiver's exceptions: the format's (re-exported) and the one table of AWS errors.

Every botocore ``ClientError`` is translated here, once, by its ``Error.Code`` (never by its
message text), into the exception class a caller or user can act on — as s3fs's ``errors.py``
maps S3 codes to ``OSError`` subclasses. The translated error keeps the AWS code as ``code``
and the original exception as ``__cause__`` (shown with ``--debug``). Callers that treat
"absent" as an answer do not inspect codes either: they call a helper that says so by name
(:func:`archiver.aws.describe.describe_or_none`).
"""

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
    PoisonRecord,
    UsageError,
)

__all__ = [
    "ERROR_CODES",
    "EXIT_DIFFERENCES",
    "EXIT_FAILURE",
    "EXIT_NEW_GAP",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "AccessDenied",
    "ArchiveOwnedElsewhere",
    "ArchiverError",
    "AwsError",
    "BackupNotFound",
    "ConditionFailed",
    "CorruptArchive",
    "ExpiredIterator",
    "ExpiredNextToken",
    "ExportNotFound",
    "InvalidRequest",
    "InvalidRestoreTime",
    "ObjectInColdStorage",
    "PitrUnavailable",
    "PoisonRecord",
    "PolicyNotFound",
    "ResourceInUse",
    "ResourceNotFound",
    "ServiceUnavailable",
    "StreamNotEnabled",
    "TableAlreadyExists",
    "TableNotFound",
    "Throttled",
    "TrimmedData",
    "UnsupportedStreamView",
    "UsageError",
    "client_error_code",
    "error_class",
    "is_error",
    "translate_client_error",
]


class StreamNotEnabled(UsageError):
    """The table has no DynamoDB stream to archive."""


class UnsupportedStreamView(UsageError):
    """The stream's view type lacks new images (KEYS_ONLY, OLD_IMAGE): replay needs them."""


class AwsError(ArchiverError):
    """An AWS call failed in a way the archiver does not handle itself."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


# -- the caller named something that is not there, or asked wrongly (exit 2) -----------------


class ResourceNotFound(UsageError):
    """A table, index, stream, shard, backup, export or policy named does not exist."""

    code = ""


class TableNotFound(ResourceNotFound):
    """The named table (or its index or stream) does not exist."""


class BackupNotFound(ResourceNotFound):
    """No backup matches the ARN or name given."""


class ExportNotFound(ResourceNotFound):
    """No export has the ARN given."""


class PolicyNotFound(ResourceNotFound):
    """The table has no resource policy."""


class InvalidRequest(UsageError):
    """AWS rejected the request's parameters."""

    code = ""


class ExpiredNextToken(InvalidRequest):
    """A paging token (Kinesis ``ListShards``' ``NextToken``) older than it may be: the listing
    starts again."""


class InvalidRestoreTime(InvalidRequest):
    """The restore time is outside the restorable window."""


class PitrUnavailable(UsageError):
    """Point-in-time recovery is off (or not ready yet) where the call needs it."""

    code = ""


# -- AWS refused or failed (exit 1) ---------------------------------------------------------


class AccessDenied(AwsError):
    """The credentials lack a permission, or are not valid."""


class ResourceInUse(AwsError):
    """The resource exists already, or is busy with another operation."""


class TableAlreadyExists(ResourceInUse):
    """A restore's target table exists already."""


class ConditionFailed(AwsError):
    """A conditional write's condition did not hold."""


class Throttled(AwsError):
    """Throttled, or over a limit on concurrent operations: worth trying again later."""


class ServiceUnavailable(AwsError):
    """A server-side failure: worth trying again."""


class ExpiredIterator(AwsError):
    """A shard iterator expired: DynamoDB Streams' after 15 minutes, Kinesis's after 5."""


class TrimmedData(AwsError):
    """Stream records beyond the 24-hour retention were asked for."""


class ObjectInColdStorage(AwsError):
    """An S3 object is in Glacier Flexible Retrieval or Deep Archive: restore it from S3
    before reading it."""


AnyArchiverError = type[ArchiverError]

# The one table from ``Error.Code`` to exception class. The retryable codes of
# :mod:`archiver.aws.retry` are exactly those mapped to Throttled and ServiceUnavailable.
ERROR_CODES: dict[str, AnyArchiverError] = {
    "ResourceNotFoundException": TableNotFound,
    "TableNotFoundException": TableNotFound,  # the continuous-backups and backup APIs
    "SourceTableNotFoundException": TableNotFound,
    "BackupNotFoundException": BackupNotFound,
    "ExportNotFoundException": ExportNotFound,
    "PolicyNotFoundException": PolicyNotFound,
    "ValidationException": InvalidRequest,
    "InvalidParameterValue": InvalidRequest,
    "InvalidParameterValueException": InvalidRequest,
    "SerializationException": InvalidRequest,
    "InvalidRestoreTimeException": InvalidRestoreTime,
    "PointInTimeRecoveryUnavailableException": PitrUnavailable,
    "ContinuousBackupsUnavailableException": PitrUnavailable,
    "AccessDeniedException": AccessDenied,
    "UnrecognizedClientException": AccessDenied,
    "ResourceInUseException": ResourceInUse,
    "TableInUseException": ResourceInUse,
    "BackupInUseException": ResourceInUse,
    "TableAlreadyExistsException": TableAlreadyExists,
    "ConditionalCheckFailedException": ConditionFailed,
    "ProvisionedThroughputExceededException": Throttled,
    "ThrottlingException": Throttled,
    "Throttling": Throttled,
    "RequestLimitExceeded": Throttled,
    "LimitExceededException": Throttled,
    "InternalServerError": ServiceUnavailable,
    "InternalFailure": ServiceUnavailable,
    "ServiceUnavailable": ServiceUnavailable,
    "ExpiredIteratorException": ExpiredIterator,
    "TrimmedDataAccessException": TrimmedData,
    # Kinesis Data Streams (archiver.capture.kinesis_api): GetRecords' per-shard limits answer
    # ProvisionedThroughputExceededException (above), an encrypted stream's KMS limits
    # KMSThrottlingException; its server failures are InternalFailureException.
    "KMSThrottlingException": Throttled,
    "InternalFailureException": ServiceUnavailable,
    "InvalidArgumentException": InvalidRequest,
    "ExpiredNextTokenException": ExpiredNextToken,
    "KMSAccessDeniedException": AccessDenied,
    "KMSDisabledException": AccessDenied,
    "KMSNotFoundException": AccessDenied,
    "KMSInvalidStateException": AccessDenied,
    "KMSOptInRequired": AccessDenied,
    # Glue (the Data Catalog the Athena engine reads).
    "EntityNotFoundException": ResourceNotFound,
    "AlreadyExistsException": ResourceInUse,
    "ConcurrentModificationException": ResourceInUse,
    "InvalidInputException": InvalidRequest,
    "InternalServiceException": ServiceUnavailable,
    "OperationTimeoutException": ServiceUnavailable,
    # Athena.
    "InvalidRequestException": InvalidRequest,
    "InternalServerException": ServiceUnavailable,
    "TooManyRequestsException": Throttled,
    # S3.
    "InvalidObjectState": ObjectInColdStorage,
}

# What each kind of failure is called in the one line a user reads.
_SUMMARY: dict[AnyArchiverError, str] = {
    ResourceNotFound: "not found",
    AccessDenied: "access denied",
    ResourceInUse: "already exists or is in use",
    Throttled: "throttled, try again later",
    ServiceUnavailable: "AWS failed, try again later",
    PitrUnavailable: "point-in-time recovery is not available",
}


def client_error_code(exc: BaseException) -> str:
    """The ``Error.Code`` of a botocore ``ClientError`` (empty for anything else)."""
    response: Any = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def error_class(exc: BaseException) -> AnyArchiverError | None:
    """The class :func:`translate_client_error` turns ``exc`` into (``None``: not an AWS
    error; :class:`AwsError` for a code the table does not know)."""
    if isinstance(exc, ArchiverError):
        return type(exc)
    code = client_error_code(exc)
    if not code:
        return None
    return ERROR_CODES.get(code, AwsError)


def is_error(exc: BaseException, kind: type[Exception]) -> bool:
    """Whether the error table classifies ``exc`` (a ``ClientError`` or a translated error)
    as ``kind`` — e.g. ``is_error(exc, ConditionFailed)``."""
    cls = error_class(exc)
    return cls is not None and issubclass(cls, kind)


def translate_client_error(exc: BaseException, what: str) -> ArchiverError:
    """Turn a botocore ``ClientError`` into the archiver error a user can act on.

    ``what`` names the call for the message (``DescribeTable orders``). The result carries the
    AWS code as ``code`` and ``exc`` as ``__cause__``. An archiver error is returned as it is.
    """
    if isinstance(exc, ArchiverError):
        return exc
    code = client_error_code(exc)
    cls = ERROR_CODES.get(code, AwsError)
    detail = str(getattr(exc, "response", {}).get("Error", {}).get("Message", "") or exc)
    summary = next((text for kind, text in _SUMMARY.items() if issubclass(cls, kind)), None)
    if summary:
        message = f"{what}: {summary} ({code}: {detail})"
    elif issubclass(cls, UsageError):
        message = f"{what}: {detail}"
    else:
        message = f"{what}: {code or type(exc).__name__}: {detail}"
    err = cls(message)
    err.code = code  # type: ignore[attr-defined]
    err.__cause__ = exc
    return err
