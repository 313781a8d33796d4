"""The one error table from AWS ``Error.Code`` to exception (``archiver.aws.error_table``), the
names that say "absent" (``describe_or_none``), the replayer's translation on top, and the restore's
warning when the live table cannot be read."""

from __future__ import annotations

import ast
import logging
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from archiver.aws import error_table as errors_module
from archiver.aws.describe import describe_or_none
from archiver.aws.error_table import (
    ERROR_CODES,
    EXIT_FAILURE,
    EXIT_REFUSED,
    EXIT_USAGE,
    AccessDenied,
    ArchiverError,
    AwsError,
    BackupNotFound,
    ConditionFailed,
    InvalidRequest,
    ObjectInColdStorage,
    PitrUnavailable,
    ResourceInUse,
    ResourceNotFound,
    TableAlreadyExists,
    TableNotFound,
    Throttled,
    error_class,
    is_error,
    translate_client_error,
)
from archiver.format.storage import Archive
from replayer.exceptions import BadInput, Refused, TargetTableExists, replay_error
from replayer.strategies.replay import archived_table
from tests.conftest import create_table
from tests.helpers import client_error

EXPECTED = {
    "ResourceNotFoundException": (TableNotFound, EXIT_USAGE),
    "TableNotFoundException": (TableNotFound, EXIT_USAGE),
    "BackupNotFoundException": (BackupNotFound, EXIT_USAGE),
    "ValidationException": (InvalidRequest, EXIT_USAGE),
    "PointInTimeRecoveryUnavailableException": (PitrUnavailable, EXIT_USAGE),
    "AccessDeniedException": (AccessDenied, EXIT_FAILURE),
    "UnrecognizedClientException": (AccessDenied, EXIT_FAILURE),
    "ResourceInUseException": (ResourceInUse, EXIT_FAILURE),
    "TableAlreadyExistsException": (TableAlreadyExists, EXIT_FAILURE),
    "ConditionalCheckFailedException": (ConditionFailed, EXIT_FAILURE),
    "ThrottlingException": (Throttled, EXIT_FAILURE),
    "ProvisionedThroughputExceededException": (Throttled, EXIT_FAILURE),
}


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_every_code_in_the_table_becomes_its_class_keeping_code_and_cause(code: str) -> None:
    original = client_error(code)
    err = translate_client_error(original, "DescribeTable orders")
    assert type(err) is ERROR_CODES[code]
    assert err.code == code  # type: ignore[attr-defined]
    assert err.__cause__ is original
    assert str(err).startswith("DescribeTable orders: ")
    assert "\n" not in str(err)


@pytest.mark.parametrize("code", sorted(EXPECTED))
def test_codes_map_to_what_a_user_can_act_on(code: str) -> None:
    cls, exit_code = EXPECTED[code]
    err = translate_client_error(client_error(code), "call")
    assert isinstance(err, cls)
    assert err.exit_code == exit_code


def test_an_unknown_code_is_an_aws_error_with_its_code() -> None:
    err = translate_client_error(client_error("BrandNewException"), "call")
    assert type(err) is AwsError and err.code == "BrandNewException"
    assert "BrandNewException" in str(err)


def test_the_message_text_never_decides_the_class() -> None:
    err = translate_client_error(
        client_error("ValidationException", "ResourceNotFoundException: Requested resource"),
        "call",
    )
    assert type(err) is InvalidRequest
    assert error_class(client_error("ThrottlingException", "table not found")) is Throttled
    assert error_class(ValueError("ResourceNotFoundException")) is None


def test_an_archiver_error_is_returned_as_it_is() -> None:
    err = TableNotFound("gone")
    assert translate_client_error(err, "call") is err


# -- "absent" said by name --------------------------------------------------------------------


def test_describe_or_none_on_a_missing_table_is_none(ddb: Any) -> None:
    assert describe_or_none(ddb, "no-such-table") is None
    create_table(ddb, "orders")
    described = describe_or_none(ddb, "orders")
    assert described is not None and described["TableName"] == "orders"


class Denied:
    """DescribeTable as it answers credentials without ``dynamodb:DescribeTable``."""

    def __init__(self) -> None:
        self.error = client_error("AccessDeniedException", "not authorized")

    def describe_table(self, TableName: str) -> dict[str, Any]:
        raise self.error


def test_describe_or_none_does_not_call_access_denied_absent() -> None:
    client = Denied()
    with pytest.raises(AccessDenied) as raised:
        describe_or_none(client, "orders")
    assert raised.value.__cause__ is client.error


# -- the replayer's errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "cls", "exit_code"),
    [
        ("TableAlreadyExistsException", TargetTableExists, EXIT_REFUSED),
        ("ResourceInUseException", TargetTableExists, EXIT_REFUSED),
        ("PointInTimeRecoveryUnavailableException", Refused, EXIT_REFUSED),
        ("InvalidRestoreTimeException", Refused, EXIT_REFUSED),
        ("SourceTableNotFoundException", BadInput, EXIT_USAGE),
        ("BackupNotFoundException", BadInput, EXIT_USAGE),
        ("ValidationException", BadInput, EXIT_USAGE),
    ],
)
def test_replay_error_turns_the_table_s_classes_into_the_replayer_s(
    code: str, cls: type[Exception], exit_code: int
) -> None:
    original = client_error(code)
    err = replay_error(original, "restore orders into 'copy'")
    assert type(err) is cls
    assert err.exit_code == exit_code  # type: ignore[attr-defined]
    assert err.code == code  # type: ignore[attr-defined]
    assert err.__cause__ is original
    assert str(err).startswith("restore orders into 'copy': ")


def test_replay_error_keeps_other_aws_errors_and_passes_the_rest_through() -> None:
    throttled = replay_error(client_error("ThrottlingException"), "BatchWriteItem t")
    assert isinstance(throttled, Throttled) and isinstance(throttled, ArchiverError)
    plain = ValueError("not from AWS")
    assert replay_error(plain, "call") is plain


# -- the restore's fallback to the live table --------------------------------------------------


def test_an_unreadable_live_table_is_a_warning_naming_call_and_code(
    archive: Archive, caplog: pytest.LogCaptureFixture
) -> None:
    plan: Any = SimpleNamespace(
        table="orders", at=datetime(2026, 1, 31, 12, tzinfo=UTC), table_id="id-1"
    )
    with caplog.at_level(logging.WARNING), pytest.raises(Refused, match="holds no description"):
        archived_table(archive, plan, Denied())
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "DescribeTable" in warning.getMessage()
    assert "AccessDeniedException" in warning.getMessage()
    assert "orders" in warning.getMessage()


def test_an_absent_live_table_is_no_warning(
    ddb: Any, archive: Archive, caplog: pytest.LogCaptureFixture
) -> None:
    plan: Any = SimpleNamespace(
        table="orders", at=datetime(2026, 1, 31, 12, tzinfo=UTC), table_id="id-1"
    )
    with caplog.at_level(logging.WARNING), pytest.raises(Refused):
        archived_table(archive, plan, ddb)
    assert [r for r in caplog.records if r.levelno == logging.WARNING] == []


def test_is_error_asks_the_table_for_raw_and_translated_errors() -> None:
    raw = client_error("ConditionalCheckFailedException")
    assert is_error(raw, ConditionFailed)
    assert is_error(translate_client_error(raw, "PutItem t"), ConditionFailed)
    assert is_error(client_error("TableNotFoundException"), TableNotFound)
    assert not is_error(client_error("ValidationException"), ConditionFailed)
    assert not is_error(ValueError("ConditionalCheckFailedException"), ConditionFailed)


# -- no AWS error code outside the table ---------------------------------------------------

_PROJECT = Path(__file__).resolve().parent.parent
_SCANNED = ("archiver", "replayer", "bench", "deploy")


def codes_outside_the_table(roots: list[Path]) -> list[str]:
    """``path:line: code`` for every string constant equal to a code of the error table in
    the Python files under ``roots``, except in the module that holds the table."""
    table_module = Path(errors_module.__file__).resolve()
    found = []
    for root in roots:
        for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            if path.resolve() == table_module:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and node.value in ERROR_CODES:
                    found.append(f"{path}:{node.lineno}: {node.value}")
    return found


def test_no_aws_error_code_is_compared_as_a_string_outside_the_error_table() -> None:
    roots = [_PROJECT / name for name in _SCANNED] + [_PROJECT / "demo.py"]
    assert codes_outside_the_table([root for root in roots if root.exists()]) == []


def test_a_planted_error_code_is_found(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(
        "def absent(exc):\n    return client_error_code(exc) == 'EntityNotFoundException'\n"
    )
    assert codes_outside_the_table([tmp_path]) == [f"{planted}:2: EntityNotFoundException"]


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("EntityNotFoundException", ResourceNotFound),
        ("AlreadyExistsException", ResourceInUse),
        ("TooManyRequestsException", Throttled),
        ("InvalidObjectState", ObjectInColdStorage),
    ],
)
def test_glue_athena_and_s3_codes_have_their_classes(code: str, kind: type[Exception]) -> None:
    assert is_error(client_error(code), kind)
