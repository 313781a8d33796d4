"""The replayer's exceptions, each carrying the exit code DESIGN.md assigns to it."""

from __future__ import annotations

from archiver.aws.error_table import (
    EXIT_FAILURE,
    EXIT_REFUSED,
    EXIT_USAGE,
    ArchiverError,
    InvalidRequest,
    InvalidRestoreTime,
    PitrUnavailable,
    ResourceInUse,
    ResourceNotFound,
    error_class,
    translate_client_error,
)


class ReplayError(Exception):
    """Base of every error the replayer reports to a user as one line."""

    exit_code: int = EXIT_FAILURE


class BadInput(ReplayError):
    """Malformed input: a time, a key, a URL."""

    exit_code = EXIT_USAGE


class DamagedFile(ReplayError):
    """A change or snapshot file cannot be read (truncated, corrupt): the archive is damaged."""

    exit_code = EXIT_USAGE


class Refused(ReplayError):
    """A safety check refused the operation; nothing was created or written."""

    exit_code = EXIT_REFUSED


class AfterWatermark(Refused):
    """T is later than the instant up to which every shard is archived."""


class OutsideCoverage(Refused):
    """[log_from, T] is not inside the archived log's coverage."""


class GapInLog(Refused):
    """[log_from, T] meets a recorded gap."""


class BrokenChain(Refused):
    """A change file in the range is missing, truncated or replaced (its shard's chain is
    broken): the log cannot be trusted there, as across a gap."""


class NoUsableBase(Refused):
    """No snapshot is valid at T and the log does not start at table creation."""


class TargetTableExists(Refused):
    """The target table already exists."""


# How a failed AWS call becomes a replayer error: first the archiver's one table from
# ``Error.Code`` to exception, then, for what a restore's user acts on differently, the
# replayer's class. Anything else stays the archiver's error (it carries its own exit code).
_AS_REPLAY_ERROR: dict[type[ArchiverError], type[ReplayError]] = {
    ResourceInUse: TargetTableExists,  # the replayer gets it only creating or restoring a target
    PitrUnavailable: Refused,
    InvalidRestoreTime: Refused,
    ResourceNotFound: BadInput,
    InvalidRequest: BadInput,
}


def replay_error(exc: Exception, what: str) -> Exception:
    """The error a replayer command reports for ``exc``, raised by the AWS call ``what``.

    Keeps the AWS code as ``code`` and the botocore error as ``__cause__``; an exception that
    is no AWS error is returned as it is.
    """
    if error_class(exc) is None:
        return exc
    err = translate_client_error(exc, what)
    for archiver_class, replay_class in _AS_REPLAY_ERROR.items():
        if isinstance(err, archiver_class):
            replayed = replay_class(str(err))
            replayed.code = getattr(err, "code", "")  # type: ignore[attr-defined]
            replayed.__cause__ = err.__cause__
            return replayed
    return err


class InexactRestore(Refused):
    """T is inside an incremental-export window and some keys' state at T is not known."""
