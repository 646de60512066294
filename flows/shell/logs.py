"""Logging for every command: one-line messages on the console (stderr), everything with its
tracebacks in the data root's `logs/cllm.log`; Prefect's reports of failed runs kept off the
console (the command says in one line what failed).
"""

from __future__ import annotations

import logging
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any


class CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (pytest and embedding tools swap it), so a
    `main()` called in-process never leaves a handler on a stream that has since closed.

    Its name must not start with "_": Prefect keeps the root handlers it takes for the user's
    own, and replaces those of private classes with its console handler.
    """

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


PREFECT_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "prefect.engine")
LOG_FILE_BYTES = 5 * 1024 * 1024  # logs/cllm.log rotates at this size, 3 old files kept


class OneLineFormatter(logging.Formatter):
    """The console's lines: a message, never a traceback (those go to the log file)."""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None,
                                            "exc_text": None, "stack_info": None})
        return super().format(record)


class ConsoleFilter(logging.Filter):
    """Keeps Prefect's reports of a failed flow or task run off the console: the command says
    in one line what failed, and the log file has Prefect's account with its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and record.name.startswith(PREFECT_RUN_LOGGERS))


def setup_logging(verbose: int = 0, quiet: int = 0) -> None:
    level = logging.INFO + 10 * (quiet - verbose)
    level = min(max(level, logging.DEBUG), logging.ERROR)
    fmt = "%(asctime)s %(levelname).1s %(name)s: %(message)s" if verbose else \
        "%(asctime)s %(levelname).1s %(message)s"
    console = CurrentStderrHandler()
    console.setLevel(level)
    console.setFormatter(logging.Formatter(fmt, datefmt="%H:%M:%S") if verbose > 1
                         else OneLineFormatter(fmt, datefmt="%H:%M:%S"))
    if verbose < 2:
        console.addFilter(ConsoleFilter())
    logging.basicConfig(level=min(level, logging.INFO), handlers=[console], force=True)
    # one line per HTTP request (Prefect's API client) drowns the stage lines
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))


class LogFile(RotatingFileHandler):
    """logs/cllm.log, made on the first line logged: a command that logs nothing (`cllm
    config`, `cllm status`) leaves no folder behind."""

    def _open(self) -> Any:
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        # an unwritable data root: drop the file quietly; the console still says everything
        logging.getLogger().removeHandler(self)
        self.close()


def log_to_file(folder: Path) -> Path:
    """Also log (at INFO, tracebacks included) to `folder/cllm.log`, where a failed command's
    one-line message points."""
    path = (folder / "cllm.log").absolute()
    root_logger = logging.getLogger()
    if not any(isinstance(h, LogFile) and Path(h.baseFilename) == path
               for h in root_logger.handlers):
        handler = LogFile(path, maxBytes=LOG_FILE_BYTES, backupCount=3, encoding="utf-8",
                          delay=True)
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(process)d %(levelname).1s %(name)s: %(message)s"))
        root_logger.addHandler(handler)
    return path
