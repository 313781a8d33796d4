"""Checking that a request is signed (AWS Signature Version 4) with credentials the server
was given.

When the endpoint is reachable by others (``--allow-remote``) every request must carry a
SigV4 ``Authorization`` header made with one of the access key pairs in
``--credentials-file`` — which any AWS SDK, the AWS CLI and PynamoDB do once configured with
that key pair. The signature is recomputed with botocore's own signer
(:class:`botocore.auth.SigV4Auth`) over the headers the client signed, the body and the
client's timestamp, and compared in constant time. Everyone else gets DynamoDB's answers:
``MissingAuthenticationTokenException`` (unsigned), ``IncompleteSignatureException``
(malformed), ``UnrecognizedClientException`` (unknown key), ``InvalidSignatureException``
(wrong signature, wrong service, or a timestamp more than 15 minutes off).

The credentials file is the AWS shared-credentials format: any number of sections, each with
``aws_access_key_id`` and ``aws_secret_access_key``.
"""

from __future__ import annotations

import configparser
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from replayer.exceptions import BadInput
from replayer.serve.dynamodb_errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)

SERVICE = "dynamodb"
MAX_SKEW = timedelta(minutes=15)
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<headers>[^,\s]+)\s*,\s*Signature=(?P<signature>[0-9a-fA-F]+)\s*$"
)
_STAMP = "%Y%m%dT%H%M%SZ"


def load_credentials(path: str) -> dict[str, str]:
    """Access key id → secret access key, from an AWS shared-credentials file.

    Raises:
        BadInput: unreadable, or without a complete key pair.
    """
    parser = configparser.ConfigParser()
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, configparser.Error) as exc:
        raise BadInput(f"--credentials-file {path}: {exc}") from exc
    pairs = {}
    for section in parser.sections():
        key = parser.get(section, "aws_access_key_id", fallback="").strip()
        secret = parser.get(section, "aws_secret_access_key", fallback="").strip()
        if key and secret:
            pairs[key] = secret
    if not pairs:
        raise BadInput(
            f"--credentials-file {path}: no section with aws_access_key_id and "
            "aws_secret_access_key"
        )
    return pairs


class SignatureVerifier:
    """Verifies requests against ``credentials`` (access key id → secret)."""

    def __init__(self, credentials: Mapping[str, str]) -> None:
        self.credentials = dict(credentials)

    def verify(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        now: datetime | None = None,
    ) -> str:
        """The access key id that signed the request.

        Args:
            headers: the request's headers, names in lower case.

        Raises:
            DynamoDBError: one of the answers in the module doc.
        """
        authorization = headers.get("authorization")
        if not authorization:
            raise MissingAuthenticationTokenException("Request is missing Authentication Token")
        match = _AUTHORIZATION.match(authorization)
        if match is None:
            raise IncompleteSignatureException(
                f"Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' "
                f"parameters with the AWS4-HMAC-SHA256 algorithm. Authorization={authorization}"
            )
        parts = match.group("credential").split("/")
        if len(parts) != 5 or parts[4] != "aws4_request":
            raise IncompleteSignatureException(
                f"Credential should be scoped to a valid region. ({match.group('credential')})"
            )
        access_key, date, region, service, _ = parts
        secret = self.credentials.get(access_key)
        if secret is None:
            raise UnrecognizedClientException(
                "The security token included in the request is invalid."
            )
        if service != SERVICE:
            raise InvalidSignatureException(
                f"Credential should be scoped to correct service: '{SERVICE}'. "
            )
        stamp = headers.get("x-amz-date", "")
        try:
            signed_at = datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC)
        except ValueError:
            raise IncompleteSignatureException(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' "
                "header."
            ) from None
        if date != stamp[:8]:
            raise InvalidSignatureException(
                f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
                f"from HTTP: '{date}' != '{stamp[:8]}', from '{stamp}'."
            )
        current = now or datetime.now(UTC)
        if signed_at < current - MAX_SKEW:
            raise InvalidSignatureException(
                f"Signature expired: {stamp} is now earlier than "
                f"{(current - MAX_SKEW).strftime(_STAMP)} ({current.strftime(_STAMP)} - 15 min.)"
            )
        if signed_at > current + MAX_SKEW:
            raise InvalidSignatureException(
                f"Signature not yet current: {stamp} is still later than "
                f"{(current + MAX_SKEW).strftime(_STAMP)} ({current.strftime(_STAMP)} + 15 min.)"
            )
        signed = match.group("headers").split(";")
        if "host" not in signed:
            raise InvalidSignatureException(
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
            )
        request = AWSRequest(
            method=method,
            url=f"http://{headers.get('host', '')}{path}",
            data=body,
            headers={name: headers.get(name, "") for name in signed},
        )
        request.context["timestamp"] = stamp
        signer = SigV4Auth(Credentials(access_key, secret), service, region)
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected, match.group("signature").lower()):
            raise InvalidSignatureException(
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method. Consult the service "
                "documentation for details."
            )
        return access_key
