"""The command line's conventions: exit codes by class of failure, environment defaults, completion, logging
instead of print, and ``--json`` documents (the served ones against a real server)."""

from __future__ import annotations

import ast
import errno
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from sae.cli import build_parser, main, output
from sae.core import errors
from sae.core.wire import DEFAULT_URL

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = ("core", "clients", "evaluation", "training", "export", "repository", "serving", "sae")
OUTPUT_LAYER = ROOT / "sae" / "cli" / "output.py"


def _package_modules() -> list[Path]:
    # sae/<folder> are symlinks to the root folders: the scan reads each module once, under its root folder
    return sorted({p.resolve() for folder in PACKAGE_FOLDERS for p in (ROOT / folder).rglob("*.py")})


def test_no_module_but_the_output_layer_calls_print():
    offenders = []
    for path in _package_modules():
        if path == OUTPUT_LAYER:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert len(_package_modules()) > 100, "the scan sees the package"
    assert offenders == [], "library code logs (logging.getLogger(__name__)); commands print through sae/cli/output.py"


def test_the_output_layer_is_where_print_is():
    calls = [
        n
        for n in ast.walk(ast.parse(OUTPUT_LAYER.read_text()))
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"
    ]
    assert calls, "the scan above would pass vacuously if printing had moved elsewhere under another name"


@pytest.mark.parametrize(
    "error, code",
    [
        (ValueError("bad value"), output.USAGE),
        (errors.InvalidInputError("bad image"), output.USAGE),
        (errors.ModelNotServedError("no model x"), output.USAGE),
        (FileNotFoundError(errno.ENOENT, "missing", "x.h5"), output.USAGE),
        (errors.ServerUnavailableError("gone"), output.FAILURE),
        (errors.ServerNotFoundError("refused"), output.FAILURE),
        (errors.InferenceError("model failed"), output.FAILURE),
        (errors.EncodeJobError("every server is down"), output.FAILURE),
        (OSError(errno.ENOSPC, "No space left on device"), output.FAILURE),
        (RuntimeError("export failed"), output.FAILURE),
        (KeyboardInterrupt(), output.INTERRUPTED),
    ],
)
def test_each_class_of_failure_has_its_exit_code(error, code):
    assert output.exit_code_for(error) == code


def _exception_classes() -> dict[str, tuple[str, list[str]]]:
    """Every class of the package whose bases name an exception: name -> (where, base names)."""
    found = {}
    for path in _package_modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                bases = [b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases]
                found[node.name] = (f"{path.relative_to(ROOT)}:{node.lineno}", bases)
    builtin = {
        n
        for n in vars(__import__("builtins"))
        if isinstance(getattr(__import__("builtins"), n), type)
        and issubclass(getattr(__import__("builtins"), n), BaseException)
    }
    is_exception: dict[str, bool] = {}

    def exception(name: str) -> bool:
        if name in builtin:
            return True
        if name not in found or name in is_exception:
            return is_exception.get(name, False)
        is_exception[name] = False
        is_exception[name] = any(exception(b) for b in found[name][1])
        return is_exception[name]

    return {n: v for n, v in found.items() if n != "SAEError" and exception(n)}


def test_every_error_of_the_package_has_one_root():
    classes = _exception_classes()

    def rooted(name: str, seen=()) -> bool:
        bases = classes.get(name, ("", []))[1]
        return "SAEError" in bases or any(rooted(b, (*seen, name)) for b in bases if b in classes and b not in seen)

    # _StopRequested is a signal caught where it is raised; the python-backend templates run inside Triton's stub,
    # where the package is not importable, and answer with pb_utils.TritonError
    outside = [
        f"{where} {name}"
        for name, (where, _) in sorted(classes.items())
        if not rooted(name) and not name.startswith("_") and not where.startswith("repository/templates/")
    ]
    assert len(classes) > 20, "the scan sees the package's errors"
    assert outside == [], "subclass sae.core.errors.SAEError"
    assert {"core/errors.py", "core/draw.py", "evaluation/eval_config.py"} <= {
        w.split(":")[0] for w, _ in classes.values()
    }
    from sae.core.datasets import DatasetError
    from sae.core.draw import DrawError
    from sae.evaluation.disentanglement import MetricInputError
    from sae.evaluation.eval_config import EvaluationError
    from sae.experiment.grid_spec import GridError
    from sae.repository.configs import ConfigError
    from sae.serving.bench.config import BenchConfigError
    from sae.serving.explorer.calls import RequestError
    from sae.serving.triton.config import ServerConfigError
    from sae.training.checkpoint import CheckpointError
    from sae.training.config_error import TrainingConfigError
    from sae.training.overrides import OverrideError

    # the errors of a user's input, file, config or flag: SAEErrors, and ValueErrors for the callers that catch those
    for cls in (
        ConfigError,
        GridError,
        CheckpointError,
        OverrideError,
        DatasetError,
        DrawError,
        MetricInputError,
        EvaluationError,
        BenchConfigError,
        RequestError,
        ServerConfigError,
        TrainingConfigError,
        errors.UsageError,
    ):
        assert issubclass(cls, (errors.SAEError, ValueError)) and output.exit_code_for(cls("x")) == output.USAGE
    assert output.exit_code_for(errors.MissingDependencyError("pip install x")) == output.FAILURE


def test_exit_codes_through_main(tmp_path, capsys, monkeypatch):
    assert main(["sample", "--n", "0"]) == output.USAGE  # a bad flag
    assert main(["validate", "--repo", str(tmp_path / "none")]) in (output.FAILURE, output.USAGE)
    assert (
        main(["experiment", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o"), "--dry-run"]) == output.USAGE
    )  # a missing input file
    assert main(["models", "--url", "127.0.0.1:1"]) == output.FAILURE  # nothing listens there
    capsys.readouterr()

    def interrupted(args):
        raise KeyboardInterrupt

    parser = build_parser()
    monkeypatch.setattr("sae.cli.build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["models"].set_defaults(func=interrupted)
    assert main(["models"]) == output.INTERRUPTED


def test_a_runtime_failure_is_one_line_and_with_debug_a_traceback(capsys, monkeypatch):
    monkeypatch.delenv("SAE_DEBUG", raising=False)
    assert main(["models", "--url", "127.0.0.1:1"]) == output.FAILURE
    err = capsys.readouterr().err.strip()
    assert err.startswith("sae models: error: no server at 127.0.0.1:1") and len(err.splitlines()) == 1
    assert main(["--debug", "models", "--url", "127.0.0.1:1"]) == output.FAILURE
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):" and "ServerNotFoundError" in lines[-2]
    assert lines[-1].startswith("sae models: error: no server at 127.0.0.1:1")


def test_a_failed_json_command_still_prints_a_document(capsys):
    assert main(["models", "--url", "127.0.0.1:1", "--json"]) == output.FAILURE
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["exit_code"] == output.FAILURE and "no server at 127.0.0.1:1" in document["error"]


def test_environment_defaults_and_the_flag_wins(monkeypatch):
    monkeypatch.setenv("SAE_URL", "127.0.0.1:9101")
    monkeypatch.setenv("SAE_MODEL", "sae12")
    monkeypatch.setenv("SAE_REPO", "/srv/models")
    parse = lambda *argv: build_parser().parse_args(list(argv))  # noqa: E731
    args = parse("sample")
    assert (args.url, args.model) == ("127.0.0.1:9101", "sae12")
    args = parse("sample", "--url", "127.0.0.1:9202", "--model", "vae")
    assert (args.url, args.model) == ("127.0.0.1:9202", "vae")
    assert parse("serve").repo == Path("/srv/models") and parse("serve", "--repo", "r").repo == Path("r")
    assert parse("export", "RUN").repo == Path("/srv/models")
    assert parse("bench").url == "127.0.0.1:9101", "bench measures $SAE_URL instead of starting a server"
    from sae.cli.arguments import urls_or_env

    assert urls_or_env(parse("encode", "d.h5", "--out", "o.h5").url) == ("127.0.0.1:9101",)
    assert urls_or_env(["127.0.0.1:1", "127.0.0.1:2"]) == ("127.0.0.1:1", "127.0.0.1:2")


def test_without_the_environment_the_package_defaults_hold(monkeypatch):
    for name in ("SAE_URL", "SAE_MODEL", "SAE_REPO"):
        monkeypatch.delenv(name, raising=False)
    args = build_parser().parse_args(["sample"])
    assert (args.url, args.model) == (DEFAULT_URL, "")
    assert build_parser().parse_args(["bench"]).url is None, "bench starts its own server"
    assert build_parser().parse_args(["serve"]).repo == Path("model_repository")


def test_a_bad_value_in_the_environment_is_refused_like_a_bad_flag(monkeypatch, capsys):
    monkeypatch.setenv("SAE_URL", "http://nowhere")
    assert main(["models"]) == output.USAGE
    assert "without a scheme" in capsys.readouterr().err
    monkeypatch.setenv("SAE_MODEL", "../up")
    monkeypatch.delenv("SAE_URL")
    assert main(["sample"]) == output.USAGE
    assert "is not a model name" in capsys.readouterr().err


def test_help_names_the_variable(capsys):
    for command, variables in (
        ("sample", ("SAE_URL", "SAE_MODEL")),
        ("serve", ("SAE_REPO",)),
        ("encode", ("SAE_URL", "SAE_MODEL")),
    ):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert all(f"env {v}" in text for v in variables), (command, text)


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o"), ("zsh", "#compdef sae")])
def test_the_completion_script_is_generated_from_the_parser(shell, marker, capsys):
    assert main(["completion", shell]) == output.OK
    script = capsys.readouterr().out
    assert marker in script
    for command in ("train", "export", "serve", "sample", "models", "load", "encode", "experiment"):
        assert command in script
    assert "--per-dimension" in script and "--model-control" in script


def test_bash_accepts_the_completion_script(tmp_path):
    script = tmp_path / "sae.bash"
    script.write_text(
        subprocess.run(
            [sys.executable, "-m", "sae", "completion", "bash"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout
    )
    probe = subprocess.run(["bash", "-c", f"source {script} && complete -p sae"], capture_output=True, text=True)
    assert probe.returncode == 0 and "sae" in probe.stdout, probe.stderr


def test_logging_goes_to_one_handler_on_stderr_as_text_or_json(capsys):
    logger = logging.getLogger("sae.serving.triton.watchdog")
    output.configure_logging("INFO", "text")
    logger.info("Triton is ready")
    logger.debug("hidden at INFO")
    assert capsys.readouterr().err == "Triton is ready\n"
    output.configure_logging("WARNING", "json")
    logger.info("hidden at WARNING")
    logger.warning("stub died")
    line = json.loads(capsys.readouterr().err)
    assert (line["message"], line["level"], line["logger"]) == ("stub died", "WARNING", "sae.serving.triton.watchdog")
    assert len(logging.getLogger("sae").handlers) == 1, "configuring again replaces the handler"
    with pytest.raises(ValueError, match="log level must be one of"):
        output.configure_logging("LOUD", "text")
    output.configure_logging("INFO", "text")


def test_log_flags_are_parsed_and_checked(capsys):
    assert main(["--log-level", "LOUD", "models"]) == output.USAGE
    assert "invalid choice: 'LOUD'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- against a server
def _json_of(argv: list[str], capsys) -> dict:
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert code == output.OK, captured.err
    return json.loads(captured.out)


@pytest.mark.server
def test_models_json(triton, capsys):
    document = _json_of(["models", "--url", triton.grpc_url], capsys)
    assert document["url"] == triton.grpc_url
    (served,) = [s for s in document["sets"] if s["name"] == ""]
    names = {m["name"] for m in served["models"]}
    assert {"hybrid_sample", "encode", "decode"} <= names, names
    assert all(m["state"] == "READY" for m in served["models"])


@pytest.mark.server
def test_sample_json_names_the_files_it_wrote(triton, tmp_path, capsys):
    out = tmp_path / "s.npz"
    document = _json_of(["sample", "--url", triton.grpc_url, "--n", "6", "--seed", "3", "--out", str(out)], capsys)
    assert document["files"] == [str(out)] and document["samples"] == 6 and document["format"] == "npz"
    import numpy as np

    with np.load(out) as arrays:
        assert len(arrays["images"]) == 6


@pytest.mark.server
def test_encode_json_reports_the_job(triton, shapes_file, tmp_path, capsys):
    from sae.core.datasets import open_dataset

    document = _json_of(
        ["encode", str(shapes_file), "--out", str(tmp_path / "z.h5"), "--url", triton.grpc_url, "--batch-size", "512"],
        capsys,
    )
    assert document["images"] == len(open_dataset(shapes_file)) and document["encoded"] == document["images"]
    assert document["out"] == str(tmp_path / "z.h5") and document["summary"].startswith("encoded")


@pytest.mark.server
def test_sae_url_and_sae_model_reach_a_real_server_and_a_flag_wins(triton, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("SAE_URL", triton.grpc_url)
    monkeypatch.setenv("SAE_MODEL", "")
    assert _json_of(["models"], capsys)["url"] == triton.grpc_url, "no --url: $SAE_URL"
    monkeypatch.setenv("SAE_MODEL", "nosuch")
    assert main(["sample", "--n", "2", "--out", str(tmp_path / "x.npz")]) == output.USAGE, (
        "$SAE_MODEL names a set it does not serve"
    )
    assert "nosuch_hybrid_sample" in capsys.readouterr().err
    monkeypatch.setenv("SAE_URL", "127.0.0.1:1")
    assert _json_of(["models", "--url", triton.grpc_url], capsys)["url"] == triton.grpc_url, "the flag wins"
