"""The command line's output layer, the one module of the package that writes to stdout and stderr itself.

- A command's result goes to stdout: human text, or with ``--json`` one JSON document (the human text then goes
  to stderr, so a script can parse stdout and a person still reads what happened).
- Everything else the package says is logged through stdlib ``logging`` under the ``sae`` logger; the library only
  logs, and :func:`configure_logging` gives that logger its one handler on stderr (plain text, or one JSON object a
  line for services, via python-json-logger).
- The exit codes of every ``sae`` command are defined here (:data:`EXIT_CODES`, :func:`exit_code_for`).
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from typing import Any

from sae.core.errors import UsageError

OK, FAILURE, USAGE, INTERRUPTED = 0, 1, 2, 130
EXIT_CODES = {
    OK: "success",
    FAILURE: "runtime failure: the server gone or refusing mid-job, a model or export failure, a full disk; "
    "or an internal error (a bug, printed with its traceback)",
    USAGE: "usage or input error: a bad flag or value, a missing or corrupt input file, a config of the wrong type",
    INTERRUPTED: "interrupted (Ctrl-C / SIGINT)",
}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")

# Files the user named that are missing or unreadable are input errors; other OS errors (disk full, a socket) are not.
_INPUT_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError)


def exit_code_for(error: BaseException) -> int:
    """The exit code of a command that raised ``error`` (the classes of :data:`EXIT_CODES`); the package's errors
    that blame an input are ValueErrors (a config; a data, checkpoint or bank file; a refused request)."""
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(error, (ValueError, *_INPUT_OS_ERRORS)):
        return USAGE
    return FAILURE


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """One handler on stderr for the ``sae`` loggers: ``text`` prints each message as it is (the lines people read
    today), ``json`` one object a line with time, level, logger and message."""
    if level not in LOG_LEVELS or fmt not in LOG_FORMATS:
        raise UsageError(
            f"log level must be one of {', '.join(LOG_LEVELS)} and format one of "
            f"{', '.join(LOG_FORMATS)}, got {level!r} / {fmt!r}"
        )
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("sae")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


def result(human: str, document: Any = None, as_json: bool = False) -> None:
    """A command's result: ``human`` on stdout, or with ``as_json`` the JSON ``document`` on stdout and ``human``
    on stderr."""
    if as_json:
        if human:
            print(human, file=sys.stderr, flush=True)
        print(json.dumps(document, indent=2, sort_keys=True, default=str), flush=True)
    elif human:
        print(human, flush=True)


def error(command: str, message: str) -> None:
    """The one line a failed command prints: ``sae CMD: error: MESSAGE``."""
    print(f"sae {command}: error: {message}", file=sys.stderr, flush=True)


def traceback_of(error: BaseException) -> None:
    """The full traceback of ``error`` on stderr (a bug's, or with ``--debug`` an error's)."""
    traceback.print_exception(error, file=sys.stderr)
    sys.stderr.flush()


def internal_error(command: str, message: str) -> None:
    """The line after the traceback of a bug (an exception that is no error of the package): exit 1."""
    print(f"sae {command}: internal error: {message}", file=sys.stderr, flush=True)


def warning(command: str, message: str) -> None:
    print(f"sae {command}: warning: {message}", file=sys.stderr, flush=True)
