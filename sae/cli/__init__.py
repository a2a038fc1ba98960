"""The `sae` command. Each subcommand lives in a module of this package with its parser (``add_parsers``) and
imports its heavy modules (torch, the server) only when it runs."""
from __future__ import annotations

import argparse
import sys
from importlib import metadata

from sae.clients.errors import SAEError
from sae.cli import arguments as arg
from sae.cli import client, demo, explore, export, measure, serve, train

COMMAND_MODULES = (train, export, serve, client, explore, measure, demo)  # the order of `sae --help`


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sae", description=__doc__, formatter_class=arg.HelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {metadata.version('sae-serving')}")
    sub = p.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.add_parsers(sub)
    for subparser in sub.choices.values():
        subparser.formatter_class = arg.HelpFormatter
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # a bad argument (argparse printed "sae CMD: error: argument --FLAG: ...") or --help
        return e.code if isinstance(e.code, int) else 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except (SAEError, OSError, ValueError, RuntimeError) as e:
        # One line, no traceback: every error of the package, and every OSError (a missing, unreadable or
        # corrupt file, a full disk), names what is wrong.
        message = " ".join(str(e).split("\n", 1)[0].split())
        print(f"sae {args.command}: error: {message or type(e).__name__}", file=sys.stderr)
        return 2
