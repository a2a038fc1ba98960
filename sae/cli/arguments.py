"""argparse ``type=`` functions of the ``sae`` command: each value is checked where it is parsed, and argparse
prefixes the message with the flag (``sae sample: error: argument --n: ...``)."""

from __future__ import annotations

import argparse
import difflib
import os
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

from sae.core.errors import UsageError

_DEVICE = re.compile(r"^(cpu|cuda(:\d{1,3})?)$")


def _int(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value}")
    return value


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def positive_float(text: str) -> float:
    value = _float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def sample_count(text: str) -> int:
    """1..the client's per-call ceiling; counts above the server's per-request limit are sent in parts."""
    from sae.core.wire import MAX_SAMPLES_PER_CALL

    value = positive_int(text)
    if value > MAX_SAMPLES_PER_CALL:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_SAMPLES_PER_CALL:,} (requests are split by the "
            f"server's limit and .h5/.png output is streamed), got {value:,}"
        )
    return value


def port(text: str) -> int:
    value = _int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number in 1..65535, got {value}")
    return value


def device(text: str) -> str:
    if not _DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"must be cpu, cuda or cuda:N (N = GPU index), got {text!r}")
    return text


def grpc_url(text: str) -> str:
    """``host:port`` as tritonclient.grpc dials it; without a port it would silently dial 443."""
    if "://" in text:
        raise argparse.ArgumentTypeError(f"give host:port without a scheme (e.g. 127.0.0.1:8001), got {text!r}")
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or "/" in text:
        raise argparse.ArgumentTypeError(f"must be host:port (e.g. 127.0.0.1:8001), got {text!r}")
    if host.startswith("[") != host.endswith("]") or (":" in host and not host.startswith("[")):
        raise argparse.ArgumentTypeError(f"an IPv6 host goes in brackets ([::1]:8001), got {text!r}")
    port(port_text)
    return text


def model_name(text: str) -> str:
    """The prefix of the served names (NAME_encode, ...); it also names folders, so no separators or '..'."""
    from sae.repository.configs import NAME_PATTERN

    if text and not NAME_PATTERN.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a model name: use up to 64 letters, digits, '_' and '-', "
            "starting with a letter or digit (no '/', '\\\\' or '..')"
        )
    return text


def output_file(text: str) -> Path:
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file name (e.g. {path / 'samples.png'})")
    return path


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` after every option whose default says something (not None or False) and whose help
    does not already name its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        says_nothing = default is None or default is False or default == "" or default == argparse.SUPPRESS
        if "default" in text or says_nothing or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def did_you_mean(what: str, name: str, known: Collection[str]) -> str:
    """One line for an unknown ``name``: the closest three known names, not all of them."""
    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else f"e.g. {', '.join(sorted(known)[:3])}"
    return f"unknown {what} {name!r}; {hint} ({len(known)} {what}s)"


def config_name(text: str) -> str:
    """A named config of training/config.py."""
    from sae.training.config import NAMED_CONFIGS

    if text not in NAMED_CONFIGS:
        raise argparse.ArgumentTypeError(did_you_mean("config", text, NAMED_CONFIGS))
    return text


def grid_name(text: str) -> str:
    """A named grid of sae/experiment/grid.py, or a TOML grid file."""
    from sae.experiment.named_grids import NAMED_GRIDS

    if text in NAMED_GRIDS or text.endswith(".toml") or Path(text).is_file():
        return text
    raise argparse.ArgumentTypeError(did_you_mean("grid", text, NAMED_GRIDS) + "; or give a .toml grid file")


# Environment defaults of the flags every command shares; a flag on the command line wins.
URL_VARIABLE, MODEL_VARIABLE, REPO_VARIABLE = "SAE_URL", "SAE_MODEL", "SAE_REPO"


def env_default(variable: str, fallback: str | None) -> str | None:
    """``$variable`` if set and not empty, else ``fallback``. argparse checks a string default with the flag's
    ``type=``, so a bad value in the environment is refused like a bad flag."""
    return os.environ.get(variable) or fallback


def add_url(
    parser: argparse.ArgumentParser, help: str = "gRPC address of the server", start_server: bool = False, **kwargs
) -> None:
    """``--url``: default ``$SAE_URL``, else the package's DEFAULT_URL (``start_server``: else None, and the command
    starts its own server). A repeatable ``--url`` (``action="append"``) reads the variable in :func:`urls_or_env`."""
    from sae.core.wire import DEFAULT_URL

    value = (
        None if kwargs.get("action") == "append" else env_default(URL_VARIABLE, None if start_server else DEFAULT_URL)
    )
    parser.add_argument("--url", type=grpc_url, default=value, help=f"{help} (env {URL_VARIABLE})", **kwargs)


def add_model(
    parser: argparse.ArgumentParser,
    help: str = "name the model set was exported under (sae export --name; default: unprefixed)",
) -> None:
    parser.add_argument(
        "--model", type=model_name, default=env_default(MODEL_VARIABLE, ""), help=f"{help} (env {MODEL_VARIABLE})"
    )


def add_repo(parser: argparse.ArgumentParser, help: str, default: Path | None = Path("model_repository")) -> None:
    value = env_default(REPO_VARIABLE, None)
    parser.add_argument(
        "--repo", type=Path, default=Path(value) if value else default, help=f"{help} (env {REPO_VARIABLE})"
    )


def urls_or_env(given: list[str] | None) -> tuple[str, ...]:
    """The servers of a repeatable ``--url``: the flags, else ``$SAE_URL``, else DEFAULT_URL."""
    from sae.core.wire import DEFAULT_URL

    if given:
        return tuple(given)
    value = env_default(URL_VARIABLE, None)
    if value is None:
        return (DEFAULT_URL,)
    try:
        return (grpc_url(value),)
    except argparse.ArgumentTypeError as e:
        raise UsageError(f"${URL_VARIABLE}: {e}") from None


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the result as one JSON document on stdout "
        "(the human lines go to stderr); the schema is in the README",
    )


def add_seed(parser: argparse.ArgumentParser, help: str, default: int | None = 0) -> None:
    """``--seed``: a non-negative integer, the same seed giving the same images (or weights) again."""
    parser.add_argument("--seed", type=non_negative_int, default=default, help=help)


def values_of(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The parsed values of the options ``names`` (their ``dest``), as keywords of the config dataclass whose fields
    are named like those options."""
    return {name: getattr(args, name) for name in names}
