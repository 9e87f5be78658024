"""What a person sees while `tickbeta demo` runs: the steps, their own messages, their counts.

Dagster's event log goes to the instance (the UI) and, as its console logger writes it, to a
log file: the console keeps a few lines per step instead of every DEBUG event.
"""

import contextlib
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from dagster import DagsterEventType, EventLogEntry
from dagster._core.events import DagsterEvent
from dagster._utils.error import SerializableErrorInfo


class RunProgress:
    """An event listener of the instance: each event of the run, as a line a person follows.

    Lines carry the seconds since `started` (a Unix time, as event timestamps are).
    """

    def __init__(self, report: Callable[[str], None], started: float) -> None:
        self._report = report
        self._started = started
        self._hours: Counter[str] = Counter()  # materializations (one per hour) by step
        self._checks: dict[str, Counter[bool]] = {}  # check outcomes by step
        self.failures: list[str] = []  # "step: error", in the order they happened

    def __call__(self, entry: EventLogEntry) -> None:
        event = entry.dagster_event
        if event is None:
            self._message(entry)
            return
        handler = self._handlers.get(event.event_type)
        if handler is not None:
            handler(self, entry, event)

    def _say(self, entry: EventLogEntry, text: str) -> None:
        stamp = f"{entry.timestamp - self._started:7.1f} s  "
        self._report(stamp + text.replace("\n", "\n" + " " * len(stamp)))

    def _message(self, entry: EventLogEntry) -> None:
        """A step's own log messages (what it reads and computes), INFO and above."""
        level = entry.level if isinstance(entry.level, int) else logging.getLevelName(entry.level)
        if level < logging.INFO:
            return
        prefix = "" if level == logging.INFO else f"{logging.getLevelName(level)}: "
        self._say(entry, f"    {prefix}{entry.user_message}")

    def _engine_message(self, entry: EventLogEntry, event: DagsterEvent) -> None:
        self._say(entry, event.message or event.event_type_value)

    def _resource_failure(self, entry: EventLogEntry, event: DagsterEvent) -> None:
        self._failed(entry, "resources", event.engine_event_data.error)

    def _engine_event(self, entry: EventLogEntry, event: DagsterEvent) -> None:
        error = event.engine_event_data.error
        if error is not None:
            self._failed(entry, event.step_key or "run", error)

    def _step_start(self, entry: EventLogEntry, event: DagsterEvent) -> None:
        self._say(entry, f"{event.step_key} started")

    def _materialization(self, entry: EventLogEntry, event: DagsterEvent) -> None:
        self._hours[event.step_key] += 1

    def _check(self, entry: EventLogEntry, event: DagsterEvent) -> None:
        evaluation = event.asset_check_evaluation_data
        self._checks.setdefault(event.step_key, Counter())[evaluation.passed] += 1
        if not evaluation.passed:
            self._say(
                entry,
                f"    check {evaluation.check_name} on {evaluation.asset_key.to_user_string()} "
                f"FAILED ({evaluation.severity.value}): {evaluation.description}",
            )

    def _step_success(self, entry: EventLogEntry, event: DagsterEvent) -> None:
        step = event.step_key
        done = [f"{step} done in {event.step_success_data.duration_ms / 1000:.1f} s"]
        if self._hours[step]:
            done.append(f"{self._hours[step]} hours materialized")
        if step in self._checks:
            outcomes = self._checks[step]
            done.append(f"{outcomes[True]} of {outcomes.total()} checks passed")
        self._say(entry, ", ".join(done))

    def _step_failure(self, entry: EventLogEntry, event: DagsterEvent) -> None:
        self._failed(entry, event.step_key, event.step_failure_data.error)

    def _step_retry(self, entry: EventLogEntry, event: DagsterEvent) -> None:
        error = error_messages(event.step_retry_data.error)
        self._say(entry, f"{event.step_key} up for retry: {error}")

    def _run_failure(self, entry: EventLogEntry, event: DagsterEvent) -> None:
        if not self.failures:  # a failure outside any step: the run's own error says why
            self._failed(entry, "run", event.job_failure_data.error, event.message)

    def _failed(
        self,
        entry: EventLogEntry,
        where: str,
        error: SerializableErrorInfo | None,
        fallback: str | None = None,
    ) -> None:
        failure = f"{where}: {error_messages(error) if error else fallback or 'failed'}"
        self.failures.append(failure)
        self._say(entry, f"FAILED {failure}")

    _handlers = {
        DagsterEventType.RESOURCE_INIT_STARTED: _engine_message,
        DagsterEventType.RESOURCE_INIT_SUCCESS: _engine_message,
        DagsterEventType.RESOURCE_INIT_FAILURE: _resource_failure,
        DagsterEventType.ENGINE_EVENT: _engine_event,
        DagsterEventType.STEP_START: _step_start,
        DagsterEventType.ASSET_MATERIALIZATION: _materialization,
        DagsterEventType.ASSET_CHECK_EVALUATION: _check,
        DagsterEventType.STEP_SUCCESS: _step_success,
        DagsterEventType.STEP_FAILURE: _step_failure,
        DagsterEventType.STEP_UP_FOR_RETRY: _step_retry,
        DagsterEventType.STEP_SKIPPED: _engine_message,
        DagsterEventType.RUN_FAILURE: _run_failure,
    }


def error_messages(error: SerializableErrorInfo) -> str:
    """An error and its causes, messages only: the stack traces are in the log file."""
    messages = []
    while error is not None:
        messages.append(error.message.strip())
        error = error.cause
    return "\n    caused by: ".join(messages)


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Everything written to stderr goes to `path` meanwhile: Python's writes (Dagster's console
    logger, warnings) and those of child processes started meanwhile, such as Spark's JVM (it
    keeps the file for its life: its start-up notices and log4j lines land there too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    with open(path, "w", buffering=1) as log, contextlib.redirect_stderr(log):
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
