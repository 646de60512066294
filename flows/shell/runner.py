"""Exit codes and the runner every command goes through: an error becomes one line on stderr
and its documented exit code; the traceback goes to the log file only.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1  # a source that failed completely, input failures with --strict, a failed check
EXIT_USAGE = 2  # bad arguments or config
EXIT_ENVIRONMENT = 3  # missing tool, locked data root or input, full disk
EXIT_INTERRUPTED = 130
FAILURES_SHOWN = 20

log = logging.getLogger("cllm")


class UsageError(Exception):
    """A command line that asks for something impossible; one line, exit status 2."""


class Failed(Exception):
    """What `guarded` raises instead of a traceback: the exit code, the message printed."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def say(prog: str, message: str) -> None:
    print(f"{prog}: {message}", file=sys.stderr)


def guarded(prog: str, call: Callable[[], Any], where: Callable[[], str] = lambda: "",
            log_file: Callable[[], str] = lambda: "") -> Any:
    """Run a command's body; every error becomes one line and `Failed(exit code)`.

    Config errors -> 2; environment problems, a locked data root or input, a full disk -> 3;
    Ctrl-C -> 130; a reader that went away (`| head`) -> 1 quietly; a bad input the body did
    not record (a missing file, a checkpoint that is not one) -> 1; anything else -> 1 as an
    internal error. `where` names the data root for the disk-full message, `log_file` the
    file that holds the traceback.
    """
    from pipeline.errors import ConfigError, EnvironmentProblem, InputError, disk_full_error
    from pipeline.lock import LockedError

    try:
        return call()
    except UsageError as e:
        say(prog, str(e))
        raise Failed(EXIT_USAGE) from None
    except ConfigError as e:
        say(prog, f"config error: {e}")
        raise Failed(EXIT_USAGE) from None
    except (EnvironmentProblem, LockedError) as e:
        say(prog, str(e))
        raise Failed(EXIT_ENVIRONMENT) from None
    except KeyboardInterrupt:
        say(prog, "interrupted")
        raise Failed(EXIT_INTERRUPTED) from None
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise Failed(EXIT_FAILED) from None
    except Exception as e:
        # ENOSPC and its kin (SQLite's "database or disk is full"), wherever in a stage they
        # surface: the machine's problem, reported like one, not as a traceback
        full = disk_full_error(e, where=where())
        if full is not None:
            say(prog, str(full))
            raise Failed(EXIT_ENVIRONMENT) from None
        log.debug("%s failed", prog, exc_info=True)
        details = f" (traceback in {log_file()})" if log_file() else ""
        if isinstance(e, InputError | FileNotFoundError | ValueError):
            say(prog, f"{e}")  # these name their input
        else:
            say(prog, f"internal error: {type(e).__name__}: {e}{details}")
        raise Failed(EXIT_FAILED) from None


def failed_completely(stats: Any) -> bool:
    """Whether a stage got nothing because everything it was given failed (a missing path,
    every URL refused): no partial success a cron job could miss."""
    return bool(stats.n_failed) and not (stats.kept or stats.skipped or stats.dropped)


def report_stats(stats: Any, strict: bool) -> int:
    """Print a stage's summary and failures; the exit code they imply."""
    print(stats.summary())
    if stats.failures:
        shown = stats.failures[:FAILURES_SHOWN]
        for f in shown:
            print(f"  failed [{f.error}] {f.source}: {f.message}", file=sys.stderr)
        if stats.n_failed > len(shown):
            print(f"  ... and {stats.n_failed - len(shown)} more (see the failures log)",
                  file=sys.stderr)
    if failed_completely(stats) or (strict and stats.n_failed):
        return EXIT_FAILED
    return EXIT_OK


def run_tool(prog: str, body: Callable[[], int], *, verbose: int = 0, quiet: int = 0,
             where: Callable[[], str] = lambda: "") -> int:
    """A legacy tool's main: its logging, then its body under `guarded`; the exit code."""
    from flows.shell.logs import setup_logging

    setup_logging(verbose, quiet)
    try:
        return guarded(prog, body, where)
    except Failed as e:
        return e.code
