"""``restore --strategy import``: stage in S3, ImportTable (executed by moto), verify; its
refusals, failures, the lost-reply retry, and the time/cost estimates ``auto`` chooses by."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from archiver.aws.clients import AwsSettings
from archiver.format import layout
from archiver.format.storage import Archive
from replayer.strategies import choice as strategies
from replayer.strategies import costs as pricing
from replayer.strategies import import_table as import_strategy
from replayer.strategies.choice import Estimate, choose, record_write_rate
from replayer.strategies.import_model import ImportModel, record_import
from replayer.strategies.import_table import ImportFailed, import_request, restore_id
from tests.conftest import create_table
from tests.test_strategies import (
    archive_once,
    next_whole_second,
    restore_cli,
    scan,
    workload,
)

GSI = {
    "IndexName": "by-n",
    "KeySchema": [{"AttributeName": "n", "KeyType": "HASH"}],
    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["s"]},
}
STAGING_BUCKET = "restore-staging"


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto finishes an import in moments; AWS's take minutes (15 s between polls there).
    monkeypatch.setattr(import_strategy, "POLL_SECONDS", 0.05)


@pytest.fixture
def staging_bucket(s3: Any) -> str:
    s3.create_bucket(Bucket=STAGING_BUCKET)
    return f"s3://{STAGING_BUCKET}/restores/orders"


def history(
    ddb: Any, archive: Archive, *, gsis: list[dict[str, Any]] | None = None, settings: bool = False
) -> Any:
    """A table with changes before and after T, archived; returns (T, the table at T).
    ``settings``: the table also has a tag and TTL (what ImportTable cannot set)."""
    table = create_table(
        ddb,
        "orders",
        gsis=gsis,
        extra_attributes=[{"AttributeName": "n", "AttributeType": "N"}] if gsis else None,
    )
    if settings:
        ddb.tag_resource(ResourceArn=table["TableArn"], Tags=[{"Key": "team", "Value": "payments"}])
        ddb.update_time_to_live(
            TableName="orders", TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"}
        )
    rng = random.Random(7)
    workload(ddb, rng, range(40), 120)
    at = next_whole_second()
    expected = scan(ddb, "orders")
    workload(ddb, rng, range(40), 60)
    archive_once(archive)
    return at, expected


def when(at: datetime) -> list[str]:
    return ["--restore-date-time", str(int(at.timestamp()))]


def import_cli(
    capsys: pytest.CaptureFixture[str], archive: Archive, at: datetime, staging: str, *extra: str
) -> tuple[int, str, str]:
    """``restore --strategy import --staging <staging>`` of the table at ``at`` into
    ``orders-imported``."""
    return restore_cli(capsys, archive, "orders-imported", *when(at), "--strategy", "import",
                       "--staging", staging, *extra)  # fmt: skip


def staged_files(s3: Any, bucket: str, prefix: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


# -- end to end ------------------------------------------------------------------------------


def test_import_restores_the_table_at_t_verified_and_deletes_its_staging(
    ddb: Any, s3: Any, s3_archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    at, expected = history(ddb, s3_archive, gsis=[GSI], settings=True)
    code, out, err = restore_cli(
        capsys, s3_archive, "orders-imported", *when(at), "--strategy", "import", "--copy-settings"
    )
    assert code == 0, out + err
    assert "strategy: import" in out
    assert "verify: identical" in out
    assert scan(ddb, "orders-imported") == expected
    table = ddb.describe_table(TableName="orders-imported")["Table"]
    assert [g["IndexName"] for g in table["GlobalSecondaryIndexes"]] == ["by-n"]
    assert table["GlobalSecondaryIndexes"][0]["Projection"] == GSI["Projection"]
    # what ImportTable cannot set, --copy-settings does afterwards (TTL after verify)
    assert table["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert ddb.list_tags_of_resource(ResourceArn=table["TableArn"])["Tags"] == [
        {"Key": "team", "Value": "payments"}
    ]
    ttl = ddb.describe_time_to_live(TableName="orders-imported")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "exp"}
    assert out.index("verify: identical") < out.index("time to live")
    # the default staging prefix is the archive's own, and it is gone after a verified restore
    assert "archive-bucket/ddb/_staging/" in out and "deleted" in out
    assert staged_files(s3, "archive-bucket", "ddb/_staging/") == []
    # the import's size and time are kept for later estimates
    stats = s3_archive.read_json(layout.restore_stats("orders"))
    assert stats["imports"][-1]["items"] == len(expected)
    assert stats["imports"][-1]["bytes"] > 0


def test_a_local_archive_needs_staging_in_s3(
    ddb: Any, archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    code, _, err = restore_cli(
        capsys, archive, "orders-imported", *when(datetime.now(UTC)), "--strategy", "import"
    )
    assert code == 2 and "needs --staging s3://" in err
    code, _, err = restore_cli(
        capsys,
        archive,
        "orders-imported",
        *when(datetime.now(UTC)),
        "--strategy",
        "import",
        "--staging",
        "/tmp/somewhere",
    )
    assert code == 2 and "reads only from S3" in err
    assert "orders-imported" not in ddb.list_tables()["TableNames"]


# -- refusals --------------------------------------------------------------------------------


def test_a_staging_prefix_that_holds_files_is_refused(
    ddb: Any, s3: Any, archive: Archive, staging_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    at, _ = history(ddb, archive)
    s3.put_object(Bucket=STAGING_BUCKET, Key="restores/orders/data/other.json.gz", Body=b"x")
    code, out, err = import_cli(capsys, archive, at, staging_bucket)
    assert code == 4, out + err
    assert "already holds 1 file(s)" in err and staging_bucket in err
    assert "orders-imported" not in ddb.list_tables()["TableNames"]
    assert staged_files(s3, STAGING_BUCKET, "restores/") == ["restores/orders/data/other.json.gz"]


def test_a_source_with_lsis_is_refused_and_auto_says_why_it_skips_import(
    ddb: Any, s3: Any, archive: Archive, staging_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ddb.create_table(
        TableName="orders",
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "at", "AttributeType": "S"},
        ],
        LocalSecondaryIndexes=[
            {
                "IndexName": "by-at",
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    for i in range(5):
        ddb.put_item(
            TableName="orders",
            Item={"pk": {"S": f"k{i}"}, "sk": {"S": "a"}, "at": {"S": "2026"}},
        )
    at = next_whole_second()
    archive_once(archive)
    staging = ["--staging", staging_bucket]
    code, _, err = restore_cli(
        capsys, archive, "orders-imported", *when(at), "--strategy", "import", *staging
    )
    assert code == 4
    assert "local secondary indexes (by-at)" in err and "ImportTable cannot create" in err
    assert "orders-imported" not in ddb.list_tables()["TableNames"]
    assert staged_files(s3, STAGING_BUCKET, "") == []

    code, out, _ = restore_cli(capsys, archive, "orders-imported", *when(at), *staging, "--dry-run")
    assert code == 0, out
    row = next(line for line in out.splitlines() if line.strip().startswith("import"))
    assert row.split()[1] == "no" and "local secondary indexes (by-at)" in row
    assert "strategy: replay" in out


# -- failures --------------------------------------------------------------------------------


class ImportDouble:
    """The moto client, with ImportTable's AWS behaviours moto lacks: ``ClientToken``
    idempotency (the same token answers with the import it started, AWS keeps it 8 hours) and
    ``ClientToken`` in ``DescribeImport``. Optionally the first reply is lost after the import
    started (``lose_first_reply``) or ``DescribeImport`` reports errors (``report``)."""

    def __init__(
        self,
        client: Any,
        *,
        lose_first_reply: bool = False,
        report: dict[str, Any] | None = None,
        unreadable: bool = False,
        calls: list[dict[str, Any]] | None = None,
        started: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self._client = client
        self.lose_first_reply = lose_first_reply
        self.report = report
        self.unreadable = unreadable  # DescribeImport refused (the caller lost its permission)
        # One account: every client of the test sees the same imports.
        self.calls = [] if calls is None else calls  # every ImportTable request received
        self.started = {} if started is None else started  # ClientToken → its import

    def import_table(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        token = kwargs["ClientToken"]
        if token in self.started:
            return {"ImportTableDescription": dict(self.started[token])}
        response = self._client.import_table(**kwargs)
        self.started[token] = {**response["ImportTableDescription"], "ClientToken": token}
        if self.lose_first_reply and len(self.calls) == 1:
            raise ReadTimeoutError(endpoint_url="http://dynamodb (reply lost)")
        return dict(response)

    def describe_import(self, **kwargs: Any) -> dict[str, Any]:
        if self.unreadable:
            raise ClientError(
                {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}},
                "DescribeImport",
            )
        response = self._client.describe_import(**kwargs)
        description = response["ImportTableDescription"]
        token = next(
            (t for t, d in self.started.items() if d["ImportArn"] == kwargs["ImportArn"]), None
        )
        description["ClientToken"] = token
        if self.report is not None and description.get("ImportStatus") != "IN_PROGRESS":
            description.update(self.report)
        return dict(response)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class Doubled:
    """The options the next DynamoDB client's double gets, and the double made."""

    def __init__(self) -> None:
        self.options: dict[str, Any] = {}
        self.calls: list[dict[str, Any]] = []
        self.started: dict[str, dict[str, Any]] = {}


@pytest.fixture
def doubled(monkeypatch: pytest.MonkeyPatch) -> Iterator[Doubled]:
    """Every DynamoDB client the CLI makes is the moto client inside an :class:`ImportDouble`."""
    holder = Doubled()
    original = AwsSettings.client

    def client(self: AwsSettings, service: str, **kwargs: Any) -> Any:
        real = original(self, service, **kwargs)
        if service != "dynamodb":
            return real
        return ImportDouble(real, calls=holder.calls, started=holder.started, **holder.options)

    monkeypatch.setattr(AwsSettings, "client", client)
    yield holder


def test_an_import_that_reports_errors_is_exit_3_naming_the_log_group_and_keeps_staging(
    ddb: Any,
    s3: Any,
    archive: Archive,
    staging_bucket: str,
    capsys: pytest.CaptureFixture[str],
    doubled: Doubled,
) -> None:
    at, _ = history(ddb, archive)
    doubled.options["report"] = {
        "ImportStatus": "FAILED",
        "ErrorCount": 2,
        "FailureCode": "ItemValidationError",
    }
    code, out, err = import_cli(capsys, archive, at, staging_bucket)
    assert code == 3, out + err
    assert "ended FAILED with 2 error(s)" in err and "ItemValidationError" in err
    assert "CloudWatch log group /aws-dynamodb/imports" in err
    assert f"staging files kept at {staging_bucket}" in err
    kept = staged_files(s3, STAGING_BUCKET, "restores/orders/")
    assert "restores/orders/_restore.json" in kept
    assert any(k.startswith("restores/orders/data/part-") for k in kept)
    assert "verify:" not in out


def test_an_import_short_of_items_is_exit_3() -> None:
    # COMPLETED without errors is not enough: every folded item must have been imported.
    with pytest.raises(ImportFailed, match="9 of 10 items imported") as caught:
        import_strategy.check_import(
            {"ImportArn": "arn:i", "ImportStatus": "COMPLETED", "ErrorCount": 0,
             "ImportedItemCount": 9},
            10,
            "s3://staging/prefix",
        )  # fmt: skip
    assert caught.value.exit_code == 3
    group = import_strategy.log_group_of(
        {"CloudWatchLogGroupArn": "arn:aws:logs:us-east-1:1:log-group:/aws-dynamodb/imports:*"}
    )
    assert group == "/aws-dynamodb/imports"


def test_a_lost_import_reply_is_asked_again_with_the_same_token_and_one_import_runs(
    ddb: Any,
    archive: Archive,
    staging_bucket: str,
    capsys: pytest.CaptureFixture[str],
    doubled: Doubled,
) -> None:
    at, expected = history(ddb, archive)
    doubled.options["lose_first_reply"] = True
    code, out, err = import_cli(capsys, archive, at, staging_bucket)
    assert code == 0, out + err
    double = doubled
    assert len(double.calls) == 2  # the lost reply, then the same request again
    assert double.calls[0] == double.calls[1]
    assert len(double.started) == 1  # one import started, not two
    assert "verify: identical" in out
    assert scan(ddb, "orders-imported") == expected


def test_a_restore_whose_import_started_resumes_by_waiting_for_that_import(
    ddb: Any,
    s3: Any,
    archive: Archive,
    staging_bucket: str,
    capsys: pytest.CaptureFixture[str],
    doubled: Doubled,
) -> None:
    at, expected = history(ddb, archive)
    doubled.options["unreadable"] = True
    code, out, err = import_cli(capsys, archive, at, staging_bucket)
    assert code == 1, out + err
    assert "AccessDenied" in err
    assert "restores/orders/_restore.json" in staged_files(s3, STAGING_BUCKET, "restores/")
    assert len(doubled.started) == 1
    # the target exists now, made by this restore's own import: the same command resumes
    doubled.options["unreadable"] = False
    code, out, err = import_cli(capsys, archive, at, staging_bucket)
    assert code == 0, out + err
    assert "already staged" in out and "started earlier" in out
    assert len(doubled.started) == 1 and len(doubled.calls) == 1  # no second import
    assert "verify: identical" in out
    assert scan(ddb, "orders-imported") == expected
    # another restore into that table is still refused
    code, _, err = restore_cli(
        capsys, archive, "orders-imported", *when(at), "--strategy", "import",
        "--staging", f"s3://{STAGING_BUCKET}/elsewhere",
    )  # fmt: skip
    assert code == 4 and "already exists" in err


def test_a_failed_staging_write_keeps_the_prefix_and_the_same_restore_resumes(
    ddb: Any,
    s3: Any,
    archive: Archive,
    staging_bucket: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    at, expected = history(ddb, archive)
    monkeypatch.setattr(import_strategy, "ITEMS_PER_FILE", 5)
    real_put = Archive.put_bytes
    puts: list[str] = []

    def failing_put(self: Archive, rel: str, data: bytes) -> None:
        if rel.startswith("data/"):
            puts.append(rel)
            if len(puts) == 3:
                raise OSError("S3 PUT failed (injected)")
        real_put(self, rel, data)

    monkeypatch.setattr(Archive, "put_bytes", failing_put)
    code, out, err = import_cli(capsys, archive, at, staging_bucket)
    assert code == 1, out + err
    assert "orders-imported" not in ddb.list_tables()["TableNames"]  # nothing imported
    kept = staged_files(s3, STAGING_BUCKET, "restores/orders/")
    assert "restores/orders/_restore.json" in kept  # this restore's own: resumable

    monkeypatch.setattr(Archive, "put_bytes", real_put)
    code, out, err = import_cli(capsys, archive, at, staging_bucket)
    assert code == 0, out + err
    assert "verify: identical" in out
    assert scan(ddb, "orders-imported") == expected
    assert staged_files(s3, STAGING_BUCKET, "restores/orders/") == []


# -- the request -----------------------------------------------------------------------------


def test_import_request_is_the_create_table_request_importtable_accepts() -> None:
    description = {
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "n", "AttributeType": "N"},
        ],
        "BillingModeSummary": {"BillingMode": "PROVISIONED"},
        "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 7},
        "GlobalSecondaryIndexes": [
            {**GSI, "ProvisionedThroughput": {"ReadCapacityUnits": 2, "WriteCapacityUnits": 3}}
        ],
        "SSEDescription": {"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": "arn:k"},
        "TableClassSummary": {"TableClass": "STANDARD_INFREQUENT_ACCESS"},
        "DeletionProtectionEnabled": True,
    }
    staging = Archive.open("s3://bucket/some/prefix")
    token = restore_id("orders", "id-1", datetime(2026, 1, 31, 12, tzinfo=UTC), "orders-new")
    request = import_request(description, "orders-new", staging, token)
    assert request["ClientToken"] == token and token.startswith("20260131T120000000Z-")
    assert request["S3BucketSource"] == {"S3Bucket": "bucket", "S3KeyPrefix": "some/prefix/data/"}
    assert (request["InputFormat"], request["InputCompressionType"]) == ("DYNAMODB_JSON", "GZIP")
    params = request["TableCreationParameters"]
    assert params["TableName"] == "orders-new"
    assert params["ProvisionedThroughput"] == {"ReadCapacityUnits": 5, "WriteCapacityUnits": 7}
    assert params["GlobalSecondaryIndexes"][0]["Projection"] == GSI["Projection"]
    assert params["GlobalSecondaryIndexes"][0]["ProvisionedThroughput"]["WriteCapacityUnits"] == 3
    sse = {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": "arn:k"}
    assert params["SSESpecification"] == sse
    # what ImportTable cannot take is left to --copy-settings
    assert "TableClass" not in params and "DeletionProtectionEnabled" not in params
    # the same restore, the same id; another T, another
    noon, one = (datetime(2026, 1, 31, h, tzinfo=UTC) for h in (12, 13))
    assert token == restore_id("orders", "id-1", noon, "orders-new")
    assert token != restore_id("orders", "id-1", one, "orders-new")


# -- estimates, time and cost ----------------------------------------------------------------


def test_import_model_is_refined_by_earlier_imports(archive: Archive) -> None:
    gib = 1024**3
    assert ImportModel.load(archive, "orders") == ImportModel()
    assert ImportModel().seconds_for(10 * gib) == pytest.approx(10 * 60 + 10 * 11 * 60)
    record_import(archive, "orders", items=1000, source_bytes=100_000, seconds=90.0)
    record_import(archive, "orders", items=10_000_000, source_bytes=4 * gib, seconds=90 + 4 * 120)
    model = ImportModel.load(archive, "orders")
    assert model.base_seconds == 90.0
    assert model.seconds_per_gib == pytest.approx(120.0)
    assert "measured" in model.source
    # the replay write rate is recorded in the same file, and keeps the imports
    record_write_rate(archive, "orders", items=5000, seconds=2.5, strategy="replay")
    assert ImportModel.load(archive, "orders") == model
    assert strategies.WriteRate.load(archive, "orders").items_per_second == 2000.0


def test_prefer_picks_the_fastest_or_the_cheapest_and_prints_both() -> None:
    estimates = [
        Estimate("replay", 600.0, "fast, many write units", cost=25.0),
        Estimate("import", 1800.0, "slow, cheap", cost=6.0),
        Estimate("pitr", None, "PITR is off"),
    ]
    fastest, why = choose(estimates, "auto", "time")
    assert fastest.strategy == "replay" and why == "fastest (vs import ~30 min $6.00)"
    cheapest, why = choose(estimates, "auto", "cost")
    assert cheapest.strategy == "import" and why == "cheapest (vs replay ~10 min $25.00)"
    table = strategies.describe_choice(estimates, cheapest, why).splitlines()
    header = table[1]
    assert header.split() == ["strategy", "usable", "est.", "time", "est.", "cost", "why"]
    replay_row, import_row, pitr_row = table[2:5]
    # aligned columns: every row's "why" starts where the header's does
    assert {row.index(text) for row, text in
            ((replay_row, "fast"), (import_row, "slow"), (pitr_row, "PITR"), (header, "why"))} == {
        header.index("why")}  # fmt: skip
    assert import_row.split()[:4] == ["import", "yes", "~30", "min"] and "$6.00" in import_row
    assert pitr_row.split()[:2] == ["pitr", "no"]


def test_costs_follow_the_list_prices() -> None:
    rates = pricing.RESTORE_RATES
    # 1M items of 1.5 KB with one GSI: 2 write units each, twice
    assert pricing.write_units(1_000_000, 1536, indexes=1) == 4_000_000
    assert pricing.replay_cost(1_000_000, 1536, 1) == pytest.approx(4 * 0.625)
    assert pricing.import_cost(10 * pricing.GB) == pytest.approx(10 * rates.import_per_gb)
    assert pricing.native_restore_cost(2 * pricing.GB) == pytest.approx(0.30)
    assert pricing.format_cost(0.001) == "<$0.01" and pricing.format_cost(1234.5) == "$1,234"


def test_cli_auto_prints_time_and_cost_and_prefer_cost_picks_import(
    ddb: Any, archive: Archive, staging_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    at, _ = history(ddb, archive)
    staging = ["--staging", staging_bucket]
    code, out, _ = restore_cli(capsys, archive, "orders-restored", *when(at), *staging, "--dry-run")
    assert code == 0, out
    assert "est. time" in out and "est. cost" in out
    names = {"replay", "import", "backup", "pitr"}
    rows = {
        line.split()[0]: line
        for line in out.splitlines()
        if line.startswith("  ") and line.split()[0] in names
    }
    assert set(rows) == names
    for name in ("replay", "import"):
        assert rows[name].split()[1] == "yes" and "$" in rows[name]
    assert "strategy: replay — fastest" in out  # seconds of writes beat an import's minutes

    code, out, _ = restore_cli(
        capsys, archive, "orders-restored", *when(at), *staging, "--dry-run", "--prefer", "cost"
    )
    assert code == 0, out
    assert "strategy: import — cheapest (vs replay" in out
    assert "orders-restored" not in ddb.list_tables()["TableNames"]
