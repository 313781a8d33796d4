"""AWS clients, configured the same way for every command.

Botocore itself honours ``AWS_PROFILE``, ``AWS_REGION``/``AWS_DEFAULT_REGION``,
``AWS_ENDPOINT_URL`` and the per-service ``AWS_ENDPOINT_URL_DYNAMODB``,
``AWS_ENDPOINT_URL_DYNAMODB_STREAMS`` and ``AWS_ENDPOINT_URL_S3``; ``--endpoint-url``,
``--region`` and ``--profile`` override them. Clients are created here and passed in, so
tests hand any module a client pointed at moto or at a test double.
"""

from __future__ import annotations

import functools
import os
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, overload

import boto3
import botocore.session
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.config import Config
from botocore.loaders import Loader, create_loader

if TYPE_CHECKING:
    # The stubs are installed for mypy only (the ``test`` extra), never at run time.
    from mypy_boto3_application_autoscaling import ApplicationAutoScalingClient
    from mypy_boto3_athena import AthenaClient
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_glue import GlueClient
    from types_aiobotocore_application_autoscaling import (
        ApplicationAutoScalingClient as AioApplicationAutoScalingClient,
    )
    from types_aiobotocore_cloudwatch import CloudWatchClient as AioCloudWatchClient
    from types_aiobotocore_dynamodb import DynamoDBClient as AioDynamoDBClient
    from types_aiobotocore_dynamodbstreams import (
        DynamoDBStreamsClient as AioDynamoDBStreamsClient,
    )

# The services the code calls; a new one needs its overloads below and its stubs in the
# ``test`` extra (``types-aiobotocore[...]`` and ``boto3-stubs[...]``).
Service = Literal["application-autoscaling", "cloudwatch", "dynamodb", "dynamodbstreams", "kinesis"]
# Services reached only with a synchronous client (the fold on Athena, its Glue tables).
SyncService = Service | Literal["athena", "glue"]

# One retry layer per call, never two stacked (archiver/aws/retry.py says which calls are whose):
# botocore's standard mode retries the one-off control-plane calls; a client whose calls all go
# through archiver.aws.retry (stream reads, scan pages, batch writes) has botocore's retries off,
# or each of our attempts would be up to 5 of botocore's.
_STANDARD: dict[str, Any] = {
    "retries": {"mode": "standard", "max_attempts": 5},
    "max_pool_connections": 64,
}
_OWN: dict[str, Any] = {
    "retries": {"mode": "standard", "total_max_attempts": 1},
    "max_pool_connections": 64,
}
_CONFIG = Config(**_STANDARD)
_OWN_RETRIES = Config(**_OWN)
# aiobotocore's own Config subclass, with its options left at their defaults (which are what
# it uses for a plain botocore Config too).
_AIO_CONFIG = AioConfig(**_STANDARD)
_AIO_OWN_RETRIES = AioConfig(**_OWN)


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
        session.register_component("data_loader", _shared_loader())
        if self.profile:
            session.set_config_variable("profile", self.profile)
        return session

    @overload
    def aio_client(
        self, service: Literal["application-autoscaling"], *, own_retries: bool = False
    ) -> AbstractAsyncContextManager[AioApplicationAutoScalingClient]: ...
    @overload
    def aio_client(
        self, service: Literal["cloudwatch"], *, own_retries: bool = False
    ) -> AbstractAsyncContextManager[AioCloudWatchClient]: ...
    @overload
    def aio_client(
        self, service: Literal["dynamodb"], *, own_retries: bool = False
    ) -> AbstractAsyncContextManager[AioDynamoDBClient]: ...
    @overload
    def aio_client(
        self, service: Literal["dynamodbstreams"], *, own_retries: bool = False
    ) -> AbstractAsyncContextManager[AioDynamoDBStreamsClient]: ...
    @overload
    def aio_client(
        self, service: Literal["kinesis"], *, own_retries: bool = False
    ) -> AbstractAsyncContextManager[Any]: ...  # no stubs: the capture types its calls itself
    def aio_client(
        self, service: Service, *, own_retries: bool = False
    ) -> AbstractAsyncContextManager[Any]:
        """An aiobotocore client context manager: ``async with settings.aio_client("dynamodb")``.

        ``own_retries``: every call of this client is retried by :mod:`archiver.aws.retry`, so
        botocore's retries are off.
        """
        return self.aio_session().create_client(
            service,
            config=_AIO_OWN_RETRIES if own_retries else _AIO_CONFIG,
            endpoint_url=self.endpoint_url or None,
            region_name=self.region or None,
        )

    @overload
    def client(
        self, service: Literal["application-autoscaling"], *, own_retries: bool = False
    ) -> ApplicationAutoScalingClient: ...
    @overload
    def client(
        self, service: Literal["cloudwatch"], *, own_retries: bool = False
    ) -> CloudWatchClient: ...
    @overload
    def client(
        self, service: Literal["dynamodb"], *, own_retries: bool = False
    ) -> DynamoDBClient: ...
    @overload
    def client(
        self, service: Literal["dynamodbstreams"], *, own_retries: bool = False
    ) -> DynamoDBStreamsClient: ...
    @overload
    def client(
        self, service: Literal["kinesis"], *, own_retries: bool = False
    ) -> Any: ...  # no stubs: the callers type the calls they make
    @overload
    def client(self, service: Literal["athena"], *, own_retries: bool = False) -> AthenaClient: ...
    @overload
    def client(self, service: Literal["glue"], *, own_retries: bool = False) -> GlueClient: ...
    def client(
        self, service: SyncService, *, own_retries: bool = False
    ) -> (
        ApplicationAutoScalingClient
        | CloudWatchClient
        | DynamoDBClient
        | DynamoDBStreamsClient
        | AthenaClient
        | GlueClient
    ):
        """A plain boto3 client, for the synchronous paths (``own_retries``: as for
        :meth:`aio_client`)."""
        core = botocore.session.get_session()
        core.register_component("data_loader", _shared_loader())
        session = boto3.session.Session(
            profile_name=self.profile, region_name=self.region, botocore_session=core
        )
        return session.client(
            service,
            config=_OWN_RETRIES if own_retries else _CONFIG,
            endpoint_url=self.endpoint_url or None,
        )


@functools.cache
def _shared_loader() -> Loader:
    """One botocore model loader for every session this process makes: each new session
    would otherwise read and parse the service models again (a cold start opens several)."""
    return create_loader(os.environ.get("AWS_DATA_PATH"))
