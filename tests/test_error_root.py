"""One error root: ``sae CMD`` prints the package's errors (SAEError) and OSErrors as one line with their exit code,
and any other exception as the bug it is, with its traceback and "internal error", exit 1."""

from __future__ import annotations

import json

import pytest

from sae.cli import build_parser, main, output
from sae.core.errors import UsageError
from sae.training.config_error import TrainingConfigError


@pytest.fixture
def models_raises(monkeypatch):
    """``sae models`` with a handler that raises the exception it is given (a parser built when it is set, after
    the test's environment, then patched)."""
    monkeypatch.delenv("SAE_DEBUG", raising=False)

    def set_error(error: BaseException) -> None:
        def handler(args):
            raise error

        parser = build_parser()
        parser._subparsers._group_actions[0].choices["models"].set_defaults(func=handler)
        monkeypatch.setattr("sae.cli.build_parser", lambda: parser)

    return set_error


def test_a_bug_prints_its_traceback_and_internal_error_even_without_debug(models_raises, capsys):
    models_raises(ZeroDivisionError("division by zero"))
    assert main(["models"]) == output.FAILURE
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert "in handler" in captured.err and "raise error" in captured.err, "the traceback reaches the raise site"
    assert lines[-1] == "sae models: internal error: ZeroDivisionError: division by zero"
    assert captured.out == ""


@pytest.mark.parametrize(
    "error", [ValueError("bad shape"), RuntimeError("state"), KeyError("latent"), TypeError("not a tensor")]
)
def test_a_builtin_error_is_a_bug_not_a_user_error(models_raises, capsys, error):
    models_raises(error)
    assert main(["models"]) == output.FAILURE
    err = capsys.readouterr().err
    assert "Traceback (most recent call last):" in err
    assert err.strip().splitlines()[-1].startswith(f"sae models: internal error: {type(error).__name__}: ")


def test_a_bug_with_json_prints_a_document_too(models_raises, capsys):
    models_raises(ZeroDivisionError("division by zero"))
    assert main(["models", "--json"]) == output.FAILURE
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document == {"error": "internal error: ZeroDivisionError: division by zero", "exit_code": output.FAILURE}
    assert "Traceback (most recent call last):" in captured.err


def test_a_package_error_is_one_line_and_exit_2(models_raises, capsys):
    models_raises(TrainingConfigError("ModelConfig.latent_dim must be positive, got 0\n(a second line)"))
    assert main(["models"]) == output.USAGE
    err = capsys.readouterr().err
    assert err == "sae models: error: ModelConfig.latent_dim must be positive, got 0\n"


@pytest.mark.parametrize("argv, env", [(["--debug", "models"], None), (["models"], "1")])
def test_debug_adds_the_traceback_of_a_package_error(models_raises, capsys, monkeypatch, argv, env):
    if env:
        monkeypatch.setenv("SAE_DEBUG", env)
    models_raises(UsageError("give either DATA or --merge DIR, not both"))
    assert main(argv) == output.USAGE
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):" and "UsageError" in lines[-2]
    assert lines[-1] == "sae models: error: give either DATA or --merge DIR, not both"


def test_an_os_error_stays_one_line(models_raises, capsys):
    models_raises(FileNotFoundError(2, "No such file or directory", "data.h5"))
    assert main(["models"]) == output.USAGE
    assert capsys.readouterr().err == "sae models: error: [Errno 2] No such file or directory: 'data.h5'\n"


def test_interrupted_is_still_130_and_quiet(models_raises, capsys):
    models_raises(KeyboardInterrupt())
    assert main(["models"]) == output.INTERRUPTED
    assert capsys.readouterr().err == ""


def test_a_bad_log_level_in_the_environment_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setenv("SAE_LOG_LEVEL", "LOUD")  # argparse checks a flag's choices, not its default
    assert main(["models", "--url", "127.0.0.1:1"]) == output.USAGE
    err = capsys.readouterr().err
    assert err.startswith("sae models: error: log level must be one of") and "internal error" not in err
