"""`sae completion SHELL`: the shell-completion script, generated from the command's own parser by shtab."""

from __future__ import annotations

import argparse

from sae.core.errors import MissingDependencyError

SHELLS = ("bash", "zsh", "tcsh")


def cmd_completion(args: argparse.Namespace) -> int:
    try:
        import shtab
    except ImportError:
        raise MissingDependencyError("shell completion needs shtab: pip install 'sae-serving[cli]'") from None
    from sae.cli import output

    output.result(shtab.complete(args.root_parser, shell=args.shell))
    return output.OK


def add_parsers(sub) -> None:
    cp = sub.add_parser(
        "completion",
        help="print the shell-completion script (bash: "
        'eval "$(sae completion bash)", or save it under ~/.local/share/bash-completion/completions/sae)',
    )
    cp.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    cp.set_defaults(func=cmd_completion)  # and root_parser: build_parser sets it on the top-level parser
