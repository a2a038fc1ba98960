"""The `sae` command explains itself: help on every option with its default, "did you mean" for names,
and errors that tell a missing server from a model that is not served from one that is not ready yet."""

from __future__ import annotations

import argparse
import socket
import time

import pytest

from sae.cli import arguments as arg
from sae.cli import build_parser, main


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def documented_actions():
    for command, parser in subparsers().items():
        for action in parser._actions:
            if not isinstance(action, argparse._HelpAction):
                yield command, action


def test_every_option_of_every_subcommand_has_help():
    missing = [
        f"{command} {'/'.join(a.option_strings) or a.dest}"
        for command, a in documented_actions()
        if not (a.help or "").strip()
    ]
    assert not missing, missing
    assert len(list(documented_actions())) > 80  # every subcommand was walked


def test_defaults_are_shown_in_help(capsys):
    for command, parser in subparsers().items():
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            default = action.default
            if (
                action.option_strings
                and default not in (None, False, "", argparse.SUPPRESS)
                and not isinstance(action, argparse._HelpAction)
            ):
                assert "default" in (action.help or "") or f"(default: {default})" in text, (command, action.dest)
    sample_help = " ".join(subparsers()["sample"].format_help().split())
    assert "(default: 64)" in sample_help and "(default: 127.0.0.1:8001)" in sample_help
    assert "(default: 0)" in sample_help  # --seed: a default of 0 is shown too


def _last_error_line(argv, capsys, code: int = 2) -> str:
    assert main(argv) == code
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1]


def test_an_unknown_config_suggests_the_closest_three(capsys):
    from sae.training.config import NAMED_CONFIGS

    line = _last_error_line(["train", "sae12-tin", "--data", "d.h5", "--out", "o"], capsys)
    assert line.startswith("sae train: error: argument config: unknown config 'sae12-tin'; did you mean sae12-tiny")
    suggested = line.split("did you mean ", 1)[1].split("?", 1)[0].split(", ")
    assert len(suggested) <= 3 and all(name in NAMED_CONFIGS for name in suggested)
    assert f"({len(NAMED_CONFIGS)} configs)" in line
    assert "betatcvae6-shapes3d" not in line  # not the whole list


def test_a_name_close_to_nothing_gets_examples_not_the_list(capsys):
    line = _last_error_line(["demo", "--config", "zzzzzz"], capsys)
    assert "unknown config 'zzzzzz'; e.g. " in line and "did you mean" not in line
    assert line.count(",") <= 2


def test_an_unknown_grid_suggests_the_closest(capsys):
    line = _last_error_line(["experiment", "cpu-shapes", "--out", "o"], capsys)
    assert "unknown grid 'cpu-shapes'; did you mean cpu-shapes3d" in line and ".toml" in line


def test_a_toml_grid_file_passes_the_name_check():
    assert build_parser().parse_args(["experiment", "mine.toml", "--out", "o"]).grid == "mine.toml"


def test_did_you_mean_is_one_line_with_at_most_three_names():
    known = [f"model{i}" for i in range(60)]
    message = arg.did_you_mean("config", "model1", known)
    assert "\n" not in message and message.count("model") == 4  # the name asked for and three suggestions


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("command", [["sample"], ["models"]])
def test_no_server_is_told_at_once_with_the_next_step(command, capsys):
    start = time.monotonic()
    line = _last_error_line([*command, "--url", f"127.0.0.1:{_closed_port()}"], capsys, code=1)  # a runtime failure
    assert time.monotonic() - start < 10  # not the 30 s wait for readiness
    assert f"sae {command[0]}: error: no server at 127.0.0.1:" in line
    assert "(connection refused)" in line and "sae serve" in line


class LoadingServer:
    """The answers of a live server whose model is still loading (what wait_ready reads from the index)."""

    def __init__(self, state: str, reason: str = ""):
        self.state, self.reason = state, reason

    def is_server_live(self, client_timeout=None):
        return True

    def get_model_repository_index(self, as_json=False, client_timeout=None):
        return {
            "models": [
                {"name": "tiny_hybrid_sample", "version": "1", "state": self.state, "reason": self.reason},
                {"name": "tiny_encode", "version": "1", "state": "READY"},
            ]
        }

    def is_model_ready(self, name, client_timeout=None):
        return self.state == "READY"

    def close(self):
        pass


def test_a_loading_model_is_waited_for_then_reported_not_ready():
    from sae.clients.triton_client import SAEClient
    from sae.core.errors import ModelNotReadyError

    client = SAEClient("127.0.0.1:1", model="tiny")
    client._client = LoadingServer("LOADING")
    start = time.monotonic()
    with pytest.raises(
        ModelNotReadyError,
        match=r"tiny_hybrid_sample at 127.0.0.1:1 not ready after 0.6 s "
        r"\(state LOADING\): the server is still starting or loading it",
    ):
        client.wait_ready(timeout_s=0.6)
    assert 0.5 < time.monotonic() - start < 30  # it waited its timeout, and then gave up


@pytest.mark.parametrize("reason,step", [("unloaded", "load it"), ("failed to load: bad onnx", "sae validate")])
def test_an_unloaded_or_failed_model_is_not_served_at_once(reason, step):
    from sae.clients.triton_client import SAEClient
    from sae.core.errors import ModelNotServedError

    client = SAEClient("127.0.0.1:1", model="tiny")
    client._client = LoadingServer("UNAVAILABLE", reason)
    start = time.monotonic()
    with pytest.raises(ModelNotServedError, match=f"tiny_hybrid_sample at 127.0.0.1:1 is not loaded .*{step}"):
        client.wait_ready(timeout_s=30)
    assert time.monotonic() - start < 15, "told at once, not after the 30 s readiness wait"


def test_a_missing_model_names_the_served_sets():
    from sae.clients.triton_client import SAEClient
    from sae.core.errors import ModelNotServedError

    client = SAEClient("127.0.0.1:1", model="other")
    client._client = LoadingServer("READY")
    with pytest.raises(
        ModelNotServedError,
        match=r"other_hybrid_sample is not served at 127.0.0.1:1 \(model sets "
        r"there: 'tiny'\): pass the set's name \(--model NAME",
    ):
        client.wait_ready(timeout_s=30)


def test_train_parses_seed_set_and_config_file():
    args = build_parser().parse_args(
        [
            "train",
            "sae12-tiny",
            "--data",
            "d",
            "--out",
            "o",
            "--seed",
            "3",
            "--set",
            "train.lr=1e-3",
            "--set",
            "model.latent_dim=16",
            "--config",
            "c.toml",
        ]
    )
    assert (args.seed, args.set, str(args.config_file)) == (3, ["train.lr=1e-3", "model.latent_dim=16"], "c.toml")
