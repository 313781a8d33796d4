"""Serve the archive read-only through DynamoDB's own API, as the tables were at any instant.

Any AWS SDK, the AWS CLI, PynamoDB or NoSQL Workbench pointed at the printed URL
(``--endpoint-url http://127.0.0.1:8000``) reads the past with its usual code: GetItem,
BatchGetItem, TransactGetItems, Query, Scan (parallel too), DescribeTable and ListTables.
Name a table as it was at an instant with ``@``:

  orders@2026-01-31T12:00:00Z     ISO 8601 with a zone
  orders@1769860800.5             epoch seconds
  orders                          --at, or else the table's latest restorable time
                                  (fixed when the server starts, and printed)

An instant the archive cannot answer exactly (after the watermark, before coverage, across a
gap, inside an inexact incremental-export window) answers ResourceNotFoundException saying
why. Every write answers AccessDeniedException: nothing is written to the archive or to AWS.
Each (table, instant) is folded once, on first use, and kept (--cache-size).

It listens on loopback only unless --allow-remote, which then requires every request to be
signed (SigV4) with a key pair from --credentials-file. With --tls-cert and --tls-key (PEM) it
speaks HTTPS (TLS 1.2 or later) and prints an https:// URL; without them, plain HTTP, and with
--allow-remote it warns that table data then crosses the network unencrypted.

Examples:
  ddb-replayer serve --archive s3://bucket/prefix
  aws dynamodb get-item --endpoint-url http://127.0.0.1:8000 \\
      --table-name orders@2026-01-31T12:00:00Z --key '{"pk": {"S": "o-1"}}'
  ddb-replayer serve --archive s3://bucket/prefix --host 0.0.0.0 --allow-remote \\
      --credentials-file creds --tls-cert cert.pem --tls-key key.pem
  aws dynamodb get-item --endpoint-url https://replayer.internal:8000 --ca-bundle cert.pem …
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime

from archiver.aws.error_table import EXIT_OK
from archiver.cliutil import add_archive_argument, open_archive, port_number
from archiver.format.timefmt import iso_ms, parse_time
from replayer.engines.fold import FoldSettings, add_fold_arguments
from replayer.exceptions import BadInput, Refused
from replayer.serve.catalog import Catalog, ReadOnlyArchive
from replayer.serve.endpoint import Endpoint
from replayer.serve.http_server import Server, is_loopback
from replayer.serve.signatures import SignatureVerifier, load_credentials
from replayer.serve.state import StateStore
from replayer.serve.tls import server_context

DEFAULT_CACHE = "4GB"
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def byte_size(text: str) -> int:
    """An argparse ``type``: ``4GB``, ``512MiB``, ``1000000`` (bytes)."""
    match = _SIZE.match(text)
    unit = match.group(2).upper() if match else ""
    if match is None or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 4GB, 512MiB)")
    return int(float(match.group(1)) * _UNITS[unit])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_archive_argument(parser)
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; anything but loopback needs --allow-remote",
    )
    parser.add_argument("--port", type=port_number, default=8000, help="port to listen on (0: any)")
    parser.add_argument(
        "--at",
        metavar="TIME",
        help="the instant a table name without @TIME means: ISO 8601 with a zone "
        "(2026-01-31T12:00:00Z) or epoch seconds (default: each table's latest restorable "
        "time when the server starts)",
    )
    parser.add_argument(
        "--cache-size",
        type=byte_size,
        default=DEFAULT_CACHE,
        metavar="SIZE",
        help="the most the materialised states may take together (items and keys); past it "
        "the least recently used is dropped and folded again when asked for",
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host; every request must then be signed with a key pair "
        "from --credentials-file",
    )
    parser.add_argument(
        "--credentials-file",
        metavar="FILE",
        help="access key pairs clients must sign with (AWS shared-credentials format: "
        "aws_access_key_id and aws_secret_access_key per section); with it, every request "
        "must be signed, on loopback too",
    )
    parser.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="serve HTTPS with this certificate (PEM; the leaf first, then any intermediate "
        "certificates); needs --tls-key",
    )
    parser.add_argument(
        "--tls-key",
        metavar="FILE",
        help="the certificate's private key (PEM, not passphrase-protected); needs --tls-cert",
    )
    add_fold_arguments(parser)


def main(args: argparse.Namespace) -> int:
    if not is_loopback(args.host) and not args.allow_remote:
        raise Refused(
            f"--host {args.host} is not a loopback address: the archive's whole history would be "
            "readable from the network; pass --allow-remote (with --credentials-file) to do so"
        )
    if args.allow_remote and not args.credentials_file:
        raise BadInput("--allow-remote needs --credentials-file: remote requests must be signed")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise BadInput("--tls-cert and --tls-key go together: give both (PEM files) or neither")
    tls = server_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    verifier = None
    if args.credentials_file:
        verifier = SignatureVerifier(load_credentials(args.credentials_file))
    at: datetime | None = parse_time(args.at) if args.at else None
    archive = ReadOnlyArchive.of(open_archive(args))
    catalog = Catalog(archive, at=at)
    store = StateStore.open(archive, FoldSettings.from_args(args), args.cache_size)
    try:
        server = Server(Endpoint(catalog, store), args.host, args.port, verifier, tls)
    except OSError as exc:
        store.close()
        raise BadInput(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    if args.allow_remote and tls is None:
        print(
            "ddb-replayer serve: warning: plain HTTP, table data crosses the network "
            "unencrypted; serve HTTPS with --tls-cert and --tls-key",
            file=sys.stderr,
            flush=True,
        )
    defaults = catalog.start()
    print(f"ddb-replayer serve: {server.url} (DynamoDB API, read-only)", flush=True)
    if at is not None:
        print(f"  every table without @TIME is read at {iso_ms(at)}", flush=True)
    for table, instant in sorted(defaults.items()):
        if isinstance(instant, datetime):
            print(f"  {table} at {iso_ms(instant)} (latest restorable time)", flush=True)
        else:
            print(f"  {table}: only with @TIME ({instant})", flush=True)
    if not defaults:
        print("  (the archive holds no table yet)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("ddb-replayer serve: stopped", file=sys.stderr)
    finally:
        server.stop()
        store.close()
    return EXIT_OK
