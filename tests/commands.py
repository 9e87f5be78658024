"""Dagster's commands as a user runs them from this checkout: the environment a test gives
their processes, and the warnings they print."""

import os
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from unittest.mock import patch

from dagster import DagsterInstance

REPOSITORY = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# Python prints a warning with its category (BetaWarning, SupersessionWarning, ...); dg prints
# its own with how to suppress them.
WARNING_LINE = re.compile(r"Warning\b|suppress this warning")


def checkout_python_path() -> str:
    """A PYTHONPATH that imports this checkout first (an editable install may point at another
    one), for the process and the Spark Python workers it starts."""
    inherited = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]
    return os.pathsep.join([str(REPOSITORY), *inherited])


def dagster_home(home: Path) -> Path:
    """A DAGSTER_HOME made as the README says: deploy/dagster.yaml copied in."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPOSITORY / "deploy" / "dagster.yaml", home / "dagster.yaml")
    return home


def open_instance(home: Path) -> DagsterInstance:
    """The instance of a DAGSTER_HOME made by `dagster_home`, opened as Dagster opens it with
    DAGSTER_HOME set: its event log storage (resources/event_log.py) finds its runs there."""
    with patch.dict(os.environ, {"DAGSTER_HOME": str(home)}):
        return DagsterInstance.from_config(str(home))


def activated_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The test's environment with `env` on top, as after `source .venv/bin/activate` in this
    checkout: dg warns when the active virtual environment is not the project's."""
    return {
        **os.environ,
        "VIRTUAL_ENV": sys.prefix,
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
        "PYTHONPATH": checkout_python_path(),
        **env,
    }


def warning_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if WARNING_LINE.search(line)]
