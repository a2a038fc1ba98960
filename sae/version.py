"""``sae --version``: the version and, from a git checkout, the commit (``sae.core.version`` holds both)."""

from __future__ import annotations

import argparse
import sys

from sae.core.version import version_string


class VersionAction(argparse.Action):
    """``--version``: prints ``PROG VERSION (commit ...)`` and exits; git runs only when the flag is given."""

    def __init__(
        self,
        option_strings,
        dest=argparse.SUPPRESS,
        default=argparse.SUPPRESS,
        help="print the version (and the commit, from a git checkout) and exit",
    ):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        parser._print_message(f"{parser.prog} {version_string()}\n", sys.stdout)  # as argparse's "version" does
        parser.exit()
