"""The replayer's exceptions, each carrying the exit code DESIGN.md assigns to it."""

from __future__ import annotations

from archiver.errors import EXIT_DIFFERENCES, EXIT_FAILURE, EXIT_REFUSED, EXIT_USAGE


class ReplayError(Exception):
    """Base of every error the replayer reports to a user as one line."""

    exit_code: int = EXIT_FAILURE


class BadInput(ReplayError):
    """Malformed input: a time, a key, a URL."""

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


class NoUsableBase(Refused):
    """No snapshot is valid at T and the log does not start at table creation."""


class TargetTableExists(Refused):
    """The target table already exists."""


class Differences(ReplayError):
    """verify/diff found differences."""

    exit_code = EXIT_DIFFERENCES


class InexactRestore(Refused):
    """T is inside an incremental-export window and some keys' state at T is not known."""
