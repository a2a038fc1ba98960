"""The `sae` command. Each subcommand lives in a module of this package with its parser (``add_parsers``) and
imports its heavy modules (torch, the server) only when it runs."""

from __future__ import annotations

import argparse
import os

from sae.cli import arguments as arg
from sae.cli import client, completion, demo, explore, export, measure, output, serve, train
from sae.core.errors import SAEError
from sae.version import VersionAction

COMMAND_MODULES = (train, export, serve, client, explore, measure, demo, completion)  # the order of `sae --help`


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: argparse would otherwise read a subcommand's --log as an abbreviation of --log-level
    p = argparse.ArgumentParser(prog="sae", description=__doc__, formatter_class=arg.HelpFormatter, allow_abbrev=False)
    p.add_argument("--version", action=VersionAction)
    p.add_argument(
        "--log-level",
        choices=output.LOG_LEVELS,
        default=os.environ.get("SAE_LOG_LEVEL", "INFO"),
        help="messages of the sae.* loggers on stderr at this level and above (env SAE_LOG_LEVEL)",
    )
    p.add_argument(
        "--log-format",
        choices=output.LOG_FORMATS,
        default="text",
        help="text: each message as a line; json: one JSON object a line (for services)",
    )
    p.add_argument(
        "--debug",
        action="store_true",
        default=os.environ.get("SAE_DEBUG", "") not in ("", "0"),
        help="on an error, the full traceback before its line (env SAE_DEBUG=1)",
    )
    p.set_defaults(root_parser=p)  # `sae completion` renders it without importing this package (no import cycle)
    sub = p.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.add_parsers(sub)
    for subparser in sub.choices.values():
        subparser.formatter_class = arg.HelpFormatter
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 success, 1 runtime failure or internal error, 2 usage or input error, 130 interrupted
    (sae/cli/output.py). The package's errors (:class:`SAEError`) and OSErrors print one line; any other exception
    is a bug and prints its traceback with ``sae CMD: internal error: TYPE: MESSAGE``."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # a bad argument (argparse printed "sae CMD: error: argument --FLAG: ...") or --help
        return e.code if isinstance(e.code, int) else output.USAGE
    try:
        output.configure_logging(args.log_level, args.log_format)
        return args.func(args)
    except KeyboardInterrupt:
        return output.INTERRUPTED
    except (SAEError, OSError) as e:
        # One line: the package's errors name what is wrong, and an OSError (a missing, unreadable or corrupt
        # file, a full disk, a refused permission) is the user's environment, not a bug.
        if args.debug:
            output.traceback_of(e)
        message = " ".join(str(e).split("\n", 1)[0].split()) or type(e).__name__
        output.error(args.command, message)
        return _failed(args, message, output.exit_code_for(e))
    except Exception as e:  # anything else is a bug of the package: always its traceback
        output.traceback_of(e)
        detail = " ".join(str(e).split())
        message = f"{type(e).__name__}: {detail}" if detail else type(e).__name__
        output.internal_error(args.command, message)
        return _failed(args, f"internal error: {message}", output.FAILURE)


def _failed(args: argparse.Namespace, message: str, code: int) -> int:
    if getattr(args, "json", False):  # a script parsing stdout gets a document on failure too
        output.result("", {"error": message, "exit_code": code}, as_json=True)
    return code
