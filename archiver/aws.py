"""AWS clients, configured the same way for every command.

Botocore itself honours ``AWS_PROFILE``, ``AWS_REGION``/``AWS_DEFAULT_REGION``,
``AWS_ENDPOINT_URL`` and the per-service ``AWS_ENDPOINT_URL_DYNAMODB``,
``AWS_ENDPOINT_URL_DYNAMODB_STREAMS`` and ``AWS_ENDPOINT_URL_S3``; ``--endpoint-url``,
``--region`` and ``--profile`` override them. Clients are created here and passed in, so
tests hand any module a client pointed at moto or at a test double.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from aiobotocore.session import AioSession, get_session
from botocore.config import Config

# One retry layer per call, never two stacked (archiver/retry.py says which calls are whose):
# botocore's standard mode retries the one-off control-plane calls; a client whose calls all go
# through archiver.retry (stream reads, scan pages, batch writes) has botocore's retries off,
# or each of our attempts would be up to 5 of botocore's.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=64)
_OWN_RETRIES = Config(
    retries={"mode": "standard", "total_max_attempts": 1}, max_pool_connections=64
)


@dataclass(frozen=True)
class AwsSettings:
    """What the CLI's ``--endpoint-url``, ``--region`` and ``--profile`` said (None: defaults)."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None

    @classmethod
    def from_args(cls, args: Any) -> AwsSettings:
        return cls(
            endpoint_url=getattr(args, "endpoint_url", None),
            region=getattr(args, "region", None),
            profile=getattr(args, "profile", None),
        )

    def aio_session(self) -> AioSession:
        session = get_session()
        if self.profile:
            session.set_config_variable("profile", self.profile)
        return session

    def aio_client(self, service: str, *, own_retries: bool = False) -> Any:
        """An aiobotocore client context manager: ``async with settings.aio_client("dynamodb")``.

        ``own_retries``: every call of this client is retried by :mod:`archiver.retry`, so
        botocore's retries are off.
        """
        kwargs: dict[str, Any] = {"config": _OWN_RETRIES if own_retries else _CONFIG}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if self.region:
            kwargs["region_name"] = self.region
        return self.aio_session().create_client(service, **kwargs)

    def client(self, service: str, *, own_retries: bool = False) -> Any:
        """A plain boto3 client, for the synchronous paths (``own_retries``: as for
        :meth:`aio_client`)."""
        session = boto3.session.Session(profile_name=self.profile, region_name=self.region)
        kwargs: dict[str, Any] = {"config": _OWN_RETRIES if own_retries else _CONFIG}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        return session.client(service, **kwargs)
