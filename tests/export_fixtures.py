"""Writers of native-export folders in AWS's exact layout (AWS-FORMATS.md), for tests.

moto writes only a bare data file; AWS writes ``_started``, ``manifest-summary.json``,
``manifest-files.json`` (JSON lines, ``dataFileS3Key`` relative to the bucket root, base64 MD5
per object), their checksum files and several gzip data files — some empty, one per empty
partition — in DYNAMODB_JSON or ION. These helpers write that, so conversion is tested against
what AWS produces, and can then break it in the ways exports break.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from archiver.format import layout, tables
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms

_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_ION_KEYWORDS = {"null", "true", "false", "nan"}


@dataclass
class ExportFixture:
    store: Archive  # the export folder
    export_id: str
    bucket: str
    prefix: str
    summary: dict[str, Any]
    data_keys: list[str]  # relative to the export folder, in manifest order

    @property
    def url(self) -> str:
        return self.store.uri("") + "/"


# -- Ion text as DynamoDB writes it --------------------------------------------------------


def _ion_number(text: str) -> str:
    """``103`` → ``103.``, ``600`` → ``6d2``, ``2.5`` → ``2.5``: how ION exports spell numbers."""
    if "." in text or "e" in text.lower():
        return text
    digits = text.lstrip("-")
    sign = "-" if text.startswith("-") else ""
    stripped = digits.rstrip("0")
    zeros = len(digits) - len(stripped)
    if zeros and stripped:
        return f"{sign}{stripped}d{zeros}"
    return f"{text}."


def _ion_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _ion_name(name: str) -> str:
    if _IDENTIFIER.match(name) and name not in _ION_KEYWORDS:
        return name
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _b64_of(value: Any) -> str:
    return value if isinstance(value, str) else base64.b64encode(bytes(value)).decode("ascii")


def ion_value(av: Mapping[str, Any]) -> str:
    ((tag, value),) = av.items()
    if tag == "S":
        return _ion_string(value)
    if tag == "N":
        return _ion_number(value)
    if tag == "B":
        return "{{" + _b64_of(value) + "}}"
    if tag == "BOOL":
        return "true" if value else "false"
    if tag == "NULL":
        return "null"
    if tag == "M":
        return "{" + ",".join(f"{_ion_name(k)}:{ion_value(v)}" for k, v in value.items()) + "}"
    if tag == "L":
        return "[" + ",".join(ion_value(v) for v in value) + "]"
    if tag == "SS":
        return "$dynamodb_SS::[" + ",".join(_ion_string(v) for v in value) + "]"
    if tag == "NS":
        return "$dynamodb_NS::[" + ",".join(_ion_number(v) for v in value) + "]"
    if tag == "BS":
        return "$dynamodb_BS::[" + ",".join("{{" + _b64_of(v) + "}}" for v in value) + "]"
    raise ValueError(tag)


def ion_line(item: Mapping[str, Any]) -> str:
    return "$ion_1_0 {Item:" + ion_value({"M": item}) + "}"


def json_line(item: Mapping[str, Any]) -> str:
    def plain(av: Any) -> Any:
        if isinstance(av, dict):
            return {k: plain(v) for k, v in av.items()}
        if isinstance(av, list):
            return [plain(v) for v in av]
        if isinstance(av, bytes | bytearray):
            return base64.b64encode(bytes(av)).decode("ascii")
        return av

    return orjson.dumps({"Item": plain(dict(item))}).decode()


# -- folders -------------------------------------------------------------------------------


def new_export_id(at: datetime) -> str:
    """AWS's form: 14 digits of epoch milliseconds, a dash, 8 hex digits."""
    return f"{int(at.timestamp() * 1000):014d}-{secrets.token_hex(4)}"


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


def write_export(
    dest: Archive,
    items: Sequence[Mapping[str, Any]],
    *,
    table_arn: str,
    table_id: str,
    export_time: datetime,
    output_format: str = "DYNAMODB_JSON",
    files: int = 3,
    export_type: str | None = None,
) -> ExportFixture:
    """Write a completed full export of ``items`` under ``dest`` (the export's S3 prefix) as
    ``AWSDynamoDB/<export_id>/…``, spread over ``files`` data files plus one empty one."""
    export_id = new_export_id(export_time)
    folder_rel = layout.export_folder(export_id, "")
    bucket, prefix = dest.s3_location() or ("export-bucket", "exports")
    key_root = f"{prefix}/{folder_rel}" if prefix else folder_rel
    store = Archive(dest.fs, dest.path(folder_rel), dest.uri(folder_rel))
    store.put_bytes("_started", b"")
    suffix = ".ion.gz" if output_format == "ION" else ".json.gz"
    render = ion_line if output_format == "ION" else json_line
    chunks: list[list[Mapping[str, Any]]] = [list(items[i::files]) for i in range(files)]
    chunks.append([])  # an empty partition still gets its (empty) file
    entries = []
    data_keys = []
    billed = 0
    for chunk in chunks:
        text = "".join(render(item) + "\n" for item in chunk).encode()
        billed += len(text)
        data = gzip.compress(text)
        rel = f"data/{secrets.token_hex(13)}{suffix}"
        store.put_bytes(rel, data)
        data_keys.append(rel)
        entries.append(
            {
                "itemCount": len(chunk),
                "md5Checksum": _md5_b64(data),
                "etag": hashlib.md5(data).hexdigest(),
                "dataFileS3Key": f"{key_root}/{rel}",
            }
        )
    files_text = "".join(orjson.dumps(e).decode() + "\n" for e in entries).encode()
    store.put_bytes("manifest-files.json", files_text)
    store.put_bytes("manifest-files.checksum", hashlib.md5(files_text).hexdigest().encode())
    summary: dict[str, Any] = {
        "version": "2020-06-30",
        "exportArn": f"{table_arn}/export/{export_id}",
        "startTime": iso_ms(export_time),
        "endTime": iso_ms(export_time + timedelta(minutes=5)),
        "tableArn": table_arn,
        "tableId": table_id,
        "exportTime": iso_ms(export_time),
        "s3Bucket": bucket,
        "s3Prefix": prefix or None,
        "s3SseAlgorithm": "AES256",
        "s3SseKmsKeyId": None,
        "manifestFilesS3Key": f"{key_root}/manifest-files.json",
        "billedSizeBytes": billed,
        "itemCount": len(items),
        "outputFormat": output_format,
    }
    if export_type:
        summary["exportType"] = export_type
    summary_text = orjson.dumps(summary)
    store.put_bytes("manifest-summary.json", summary_text)
    store.put_bytes("manifest-summary.checksum", hashlib.md5(summary_text).hexdigest().encode())
    return ExportFixture(store, export_id, bucket, prefix, summary, data_keys)


def rewrite_manifest_files(fixture: ExportFixture, change: Any) -> None:
    """Apply ``change(entries)`` to manifest-files.json (to corrupt it in tests)."""
    lines = fixture.store.get_bytes("manifest-files.json").splitlines()
    entries = [orjson.loads(line) for line in lines if line.strip()]
    change(entries)
    text = "".join(orjson.dumps(e).decode() + "\n" for e in entries).encode()
    fixture.store.put_bytes("manifest-files.json", text)


def write_description(
    archive: Archive, table: str, table_id: str, key_schema: list[dict[str, str]], at: datetime
) -> None:
    """A minimal archived table description: the table's identity and keys."""
    arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}"
    table_doc = {"TableName": table, "TableArn": arn, "TableId": table_id, "KeySchema": key_schema}
    tables.store_description(archive, tables.description_document(table, table_doc, captured_at=at))


BOOKS_KEY_SCHEMA = [
    {"AttributeName": "pk", "KeyType": "HASH"},
    {"AttributeName": "sk", "KeyType": "RANGE"},
]


def books(n: int = 12) -> list[dict[str, Any]]:
    """Items (wire form: binary as bytes) with every attribute type, a composite key (``pk`` S,
    ``sk`` N) and the values exports tend to get wrong: ``103``/``600`` (ION ``103.``/``6d2``),
    38 significant digits, binary that is not UTF-8 — also nested in maps and lists — empty
    strings, non-BMP text and attribute names Ion must quote."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        out.append(
            {
                "pk": {"S": f"book-{i % 4}"},
                "sk": {"N": str(100 * (i + 1))},
                "Id": {"N": "103"},
                "PageCount": {"N": "600"},
                "Price": {"N": f"-{i}.25"},
                "Precise": {"N": "1234567890123456789012345678.9012345678"},
                "Title": {"S": f"Book {i} — “quoted” \"and\" 'single' \\ 😀\n"},
                "Empty": {"S": ""},
                "Cover": {"B": bytes([0, 255, 128, i % 256])},
                "Authors": {"SS": ["Zed", "Ann", f"A{i}"]},
                "Ratings": {"NS": ["5", "10", "1.5"]},
                "Blobs": {"BS": [b"\x00\x01", b"\xff"]},
                "InPrint": {"BOOL": i % 2 == 0},
                "Nothing": {"NULL": True},
                "Meta": {
                    "M": {
                        "raw": {"B": b"\xde\xad\xbe\xef"},
                        "list": {"L": [{"B": b"\x01"}, {"N": "7"}, {"S": "x"}]},
                        "odd name": {"S": "needs quoting in Ion"},
                    }
                },
                "with space": {"L": [{"NULL": True}, {"BOOL": False}, {"M": {}}]},
            }
        )
    return out


def read_dynamodb_json(data: bytes) -> list[dict[str, Any]]:
    """The items of one ``dynamodb-json`` part (gzip JSON lines ``{"Item": …}``)."""
    return [orjson.loads(line)["Item"] for line in gzip.decompress(data).splitlines() if line]
