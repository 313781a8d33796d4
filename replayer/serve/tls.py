"""The server side of TLS for ``serve --tls-cert/--tls-key``: one ``SSLContext``, built before
anything is served, from a PEM certificate (chain) and its private key.

The context is the standard library's server default
(``ssl.create_default_context(Purpose.CLIENT_AUTH)``: no client certificate asked for, the
library's cipher choice) with TLS 1.2 as the minimum. A pair that cannot be used — a file
missing or unreadable, not PEM, a key that does not match the certificate, a key protected by
a passphrase (nobody is there to type it) — is :class:`~replayer.exceptions.BadInput` naming
the file and why, so the command exits 2 with one line and never listens.

The handshake itself happens per connection, on the connection's own thread
(:mod:`replayer.serve.http_server`), never where connections are accepted.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from replayer.exceptions import BadInput

CERT_MARK = "-----BEGIN CERTIFICATE-----"
KEY_MARK = "PRIVATE KEY-----"


def _pem_text(option: str, path: str, mark: str, what: str) -> None:
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise BadInput(f"{option} {path}: cannot read it: {exc.strerror or exc}") from exc
    if mark not in text:
        raise BadInput(f"{option} {path}: not a PEM {what} (no '{mark.strip('-')}' block)")


def _no_passphrase() -> bytes:
    raise BadInput("the --tls-key is protected by a passphrase: give serve an unencrypted key")


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """The server ``SSLContext`` for this certificate (PEM, leaf first, then any intermediate
    certificates) and private key (PEM, unencrypted)."""
    _pem_text("--tls-cert", cert, CERT_MARK, "certificate")
    _pem_text("--tls-key", key, KEY_MARK, "private key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise BadInput(
                f"--tls-key {key} does not match the certificate in --tls-cert {cert}"
            ) from exc
        raise BadInput(
            f"--tls-cert {cert} / --tls-key {key}: cannot be loaded: {exc.reason or exc}"
        ) from exc
    return context
