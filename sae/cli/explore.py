"""`sae explore`: the explorer page (serving/explorer/) for a running server, on http://127.0.0.1:PORT."""

from __future__ import annotations

import argparse

from sae.cli import arguments as arg
from sae.cli import output
from sae.core.errors import MissingDependencyError
from sae.core.wire import is_loopback

DEFAULT_PORT = 8765


def model_list(text: str) -> tuple[str, ...]:
    """``--models a,b``: export names (``''`` for the unprefixed set is written as an empty item: ``,a``)."""
    return tuple(arg.model_name(name.strip()) for name in text.split(","))


def cmd_explore(args: argparse.Namespace) -> int:
    try:
        from sae.serving.explorer.app import serve
    except ImportError as e:
        raise MissingDependencyError(
            f"the explorer needs the explore extra (pip install 'sae-serving[explore]'): {e}"
        ) from None
    if not is_loopback(args.host):
        output.warning(
            "explore",
            f"binding {args.host} (--host), not loopback: anyone who reaches it can use the "
            "page and the model server behind it",
        )
    output.result(f"sae explore: http://{args.host}:{args.port}/ for the server at {args.url} (Ctrl-C stops it)")
    serve(args.url, args.models, host=args.host, port=args.port)
    return 0


def add_parsers(sub) -> None:
    ex = sub.add_parser(
        "explore",
        help="a page in the browser: hybrid grids, lock variables and redraw the rest, "
        "uploads, traversals (pip install 'sae-serving[explore]')",
    )
    arg.add_url(ex)
    ex.add_argument(
        "--models",
        type=model_list,
        default=None,
        metavar="A,B",
        help="offer only these model sets (export names; default: every set the server serves)",
    )
    ex.add_argument("--host", default="127.0.0.1", help="address the page binds (default 127.0.0.1: this machine only)")
    ex.add_argument("--port", type=arg.port, default=DEFAULT_PORT, help=f"port of the page (default {DEFAULT_PORT})")
    ex.set_defaults(func=cmd_explore)
