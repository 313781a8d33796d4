"""Small helpers many test files share, one copy each: a clock tests move by hand, a botocore
error as AWS would raise it, the archive's rows and folded state, a stream's records and their
Lambda-event shape."""

from __future__ import annotations

from botocore.exceptions import ClientError


class FakeClock:
    """Monotonic time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def client_error(
    code: str,
    message: str | None = None,
    operation: str = "AnyOperation",
    *,
    status: int = 400,
    botocore_retries: int = 0,
) -> ClientError:
    """The ``ClientError`` botocore raises for an AWS error ``code`` (``message`` defaults to
    one naming the code; ``botocore_retries``: the attempts botocore already made)."""
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} happened" if message is None else message},
            "ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": botocore_retries},
        },
        operation,
    )
