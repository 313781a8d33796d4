"""The exceptions of the archive format, each carrying the CLI exit code DESIGN.md assigns.

They are the base of every archiver error (``archiver.errors`` adds the ones about AWS), and
live here because the format imports nothing else of the project.
"""

from __future__ import annotations

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


class ArchiveOwnedElsewhere(UsageError):
    """The archive already holds this table name for another account or region."""


class CorruptArchive(ArchiverError):
    """A file in the archive does not match what its manifest or name promises."""

    exit_code = EXIT_USAGE
