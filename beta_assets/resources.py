"""The resources of the code location, configured from the environment (the public contract).

TICKBETA_LAKE, TICKBETA_SPARK_MASTER, TICKBETA_SPARK_REMOTE, TICKBETA_SPARK_UI and the memory sizes
TICKBETA_SPARK_DRIVER_MEMORY and TICKBETA_SPARK_EXECUTOR_MEMORY are read when the code location
loads; object-store secrets are `EnvVar`s, resolved only when a run starts, so their values never
appear in config, the UI or logs.
"""

from collections.abc import Mapping

from dagster import EnvVar
from dagster_deltalake import LocalConfig, S3Config
from dagster_deltalake.config import ClientConfig

from beta_assets.settings import (
    DEFAULT_LAKE,
    DEFAULT_SPARK_MASTER,
    LAKE_ENV,
    SHIP_CREDENTIALS_ENV,
    SPARK_DRIVER_MEMORY_ENV,
    SPARK_EXECUTOR_MEMORY_ENV,
    SPARK_MASTER_ENV,
    SPARK_REMOTE_ENV,
    SPARK_UI_ENV,
)
from resources.lake import DeltaLake
from resources.spark import SparkSessionResource

# Non-secret S3 settings passed through when set (S3-compatible servers need the endpoint).
_S3_SETTINGS = {"region": "AWS_REGION", "endpoint": "AWS_ENDPOINT_URL"}


def lake_from_environment(env: Mapping[str, str]) -> DeltaLake:
    root = env.get(LAKE_ENV) or DEFAULT_LAKE
    if not root.startswith(("s3://", "s3a://")):
        return DeltaLake(root=root, storage=LocalConfig())
    # Temporary credentials carry a session token; long-lived keys have none.
    token = {"token": EnvVar("AWS_SESSION_TOKEN")} if env.get("AWS_SESSION_TOKEN") else {}
    storage = S3Config(
        access_key_id=EnvVar("AWS_ACCESS_KEY_ID"),
        secret_access_key=EnvVar("AWS_SECRET_ACCESS_KEY"),
        **token,
        **{field: env[name] for field, name in _S3_SETTINGS.items() if env.get(name)},
    )
    allow_http = _is_true(env.get("AWS_ALLOW_HTTP"))
    return DeltaLake(
        root=root,
        storage=storage,
        client=ClientConfig(allow_http=allow_http or None),
        ship_credentials=_is_true(env.get(SHIP_CREDENTIALS_ENV)),
    )


def _is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


def spark_from_environment(env: Mapping[str, str]) -> SparkSessionResource:
    return SparkSessionResource(
        master=env.get(SPARK_MASTER_ENV) or DEFAULT_SPARK_MASTER,
        remote=env.get(SPARK_REMOTE_ENV) or None,
        ui_enabled=env.get(SPARK_UI_ENV, "true").lower() not in ("0", "false"),
        driver_memory=env.get(SPARK_DRIVER_MEMORY_ENV) or None,
        executor_memory=env.get(SPARK_EXECUTOR_MEMORY_ENV) or None,
    )
