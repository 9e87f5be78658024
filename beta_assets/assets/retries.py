"""Transient Spark failures (a Connect server restarting, a lost executor) are retried."""

import functools
from collections.abc import Callable
from typing import TypeVar

from dagster import Failure, RetryRequested

MAX_RETRIES = 2
SECONDS_BETWEEN_RETRIES = 10
# What a dropped connection or a lost executor looks like, whichever client raised it.
_TRANSIENT_SIGNS = (
    "Py4JNetworkError",
    "Connection refused",
    "Connection reset",
    "StatusCode.UNAVAILABLE",
    "ExecutorLostFailure",
    "SparkConnectGrpcException",
)

Result = TypeVar("Result")


def is_transient(error: BaseException) -> bool:
    text = f"{type(error).__name__}: {error}"
    return isinstance(error, ConnectionError) or any(sign in text for sign in _TRANSIENT_SIGNS)


def retry_transient_failures(compute: Callable[..., Result]) -> Callable[..., Result]:
    """Turn a transient failure of an asset's computation into a Dagster retry.

    Anything else (bad schema, a bug) fails at once: retrying would only fail again. Nothing
    is committed before the final write, so a retried step starts from a clean table.
    """

    @functools.wraps(compute)
    def computing(*args, **kwargs) -> Result:
        try:
            return compute(*args, **kwargs)
        except (Failure, RetryRequested):
            raise
        except Exception as error:
            if is_transient(error):
                raise RetryRequested(
                    max_retries=MAX_RETRIES, seconds_to_wait=SECONDS_BETWEEN_RETRIES
                ) from error
            raise

    return computing
