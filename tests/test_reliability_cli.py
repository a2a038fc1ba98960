"""The `sae` command checks its arguments where argparse parses them (each message names the flag) and turns
every error of the package and every OSError into one line `sae CMD: error: ...` with a non-zero exit."""

from __future__ import annotations

import pytest

from sae.cli import build_parser, main


def parse_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["sample", "--n", "0"], "argument --n: must be a positive integer, got 0"),
        (["sample", "--n", "-4"], "argument --n: must be a positive integer, got -4"),
        (["sample", "--n", "two"], "argument --n: expected an integer, got 'two'"),
        (["sample", "--n", str(10**9)], "argument --n: must be at most 1,048,576"),
        (["sample", "--url", "127.0.0.1"], "argument --url: must be host:port (e.g. 127.0.0.1:8001), got '127.0.0.1'"),
        (["sample", "--url", "127.0.0.1:0"], "argument --url: must be a port number in 1..65535, got 0"),
        (["sample", "--url", "127.0.0.1:70000"], "argument --url: must be a port number in 1..65535, got 70000"),
        (["sample", "--url", "grpc://127.0.0.1:8001"], "argument --url: give host:port without a scheme"),
        (["sample", "--seed", "-1"], "argument --seed: must be a non-negative integer, got -1"),
        (["encode", "d.h5", "--out", "o.h5", "--url", "localhost"], "argument --url: must be host:port"),
        (["encode", "d.h5", "--out", "o.h5", "--in-flight", "0"], "argument --in-flight: must be a positive integer"),
        (["encode", "d.h5", "--out", "o.h5", "--timeout", "nan"], "argument --timeout: must be a positive finite"),
        (["encode", "d.h5", "--out", "o.h5", "--metrics-port", "65536"], "argument --metrics-port: must be a port"),
        (["encode", "d.h5", "--out", "o.h5", "--model", "../etc"], "argument --model: '../etc' is not a model name"),
        (["serve", "--grpc-port", "0"], "argument --grpc-port: must be a port number in 1..65535, got 0"),
        (["serve", "--http-port", "99999"], "argument --http-port: must be a port number in 1..65535, got 99999"),
        (["serve", "--metrics-port", "-1"], "argument --metrics-port: must be a port number in 1..65535, got -1"),
        (
            ["train", "sae12-tiny", "--data", "d", "--out", "o", "--device", "gpu"],
            "argument --device: must be cpu, cuda or cuda:N (N = GPU index), got 'gpu'",
        ),
        (["train", "sae12-tiny", "--data", "d", "--out", "o", "--device", "cuda:x"], "argument --device: must be cpu"),
        (["train", "sae12-tiny", "--data", "d", "--out", "o", "--steps", "0"], "argument --steps: must be a positive"),
        (["export", "run", "--name", "a/b"], "argument --name: 'a/b' is not a model name"),
        (["export", "run", "--name", ".."], "argument --name: '..' is not a model name"),
        (["export", "run", "--name", "a\\b"], "argument --name: 'a\\\\b' is not a model name"),
        (["export", "run", "--bank-size", "0"], "argument --bank-size: must be a positive integer, got 0"),
        (["eval", "--data", "d", "--out", "o", "--url", "127.0.0.1:"], "argument --url: expected an integer, got ''"),
    ],
)
def test_bad_arguments_are_refused_where_they_are_parsed(argv, message, capsys):
    line = parse_error(argv, capsys)
    assert line.startswith(f"sae {argv[0]}: error: "), line
    assert message in line, line


@pytest.mark.parametrize(
    "argv,attribute,value",
    [
        (["sample", "--n", "300"], "n", 300),  # above the server's 256 per request: the client sends it in parts
        (["sample", "--url", "localhost:8001"], "url", "localhost:8001"),
        (["sample", "--url", "[::1]:8001"], "url", "[::1]:8001"),
        (["train", "sae12-tiny", "--data", "d", "--out", "o", "--device", "cuda:1"], "device", "cuda:1"),
        (["export", "run", "--name", "sae12-b_2"], "name", "sae12-b_2"),
        (["serve", "--grpc-port", "65535"], "grpc_port", 65535),
    ],
)
def test_good_arguments_pass(argv, attribute, value):
    assert getattr(build_parser().parse_args(argv), attribute) == value


def test_sample_out_on_a_directory_is_one_line(tmp_path, capsys):
    line = parse_error(["sample", "--out", str(tmp_path)], capsys)
    assert (
        line == f"sae sample: error: argument --out: {tmp_path} is a directory; give a file name "
        f"(e.g. {tmp_path / 'samples.png'})"
    )


def test_an_oserror_of_a_command_is_one_line(tmp_path, capsys):
    missing = tmp_path / "missing.h5"
    code = main(["encode", str(missing), "--out", str(tmp_path / "latents.h5"), "--url", "127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("sae encode: error: ") and str(missing) in err, err


def test_serve_binds_loopback_unless_host_is_given_and_says_so(capsys):
    from sae.cli.serve import server_config
    from sae.serving.triton import ServerConfig

    default = server_config(build_parser().parse_args(["serve"]))
    assert default.bind_address == "127.0.0.1" and not default.allow_external
    assert capsys.readouterr().err == ""
    external = server_config(build_parser().parse_args(["serve", "--host", "0.0.0.0"]))
    assert external.bind_address == "0.0.0.0" and external.allow_external
    assert "warning: binding 0.0.0.0 (--host), not loopback" in capsys.readouterr().err
    with pytest.raises(ValueError, match="needs allow_external=True"):
        ServerConfig(repository=".", host="0.0.0.0")  # the library never binds a public address by default
    with pytest.raises(ValueError, match="not an IPv4 address"):
        ServerConfig(repository=".", host="example.org", allow_external=True)


def test_main_returns_the_parse_error_code_without_raising(capsys):
    assert main(["sample", "--n", "0"]) == 2
    assert "sae sample: error: argument --n: must be a positive integer, got 0" in capsys.readouterr().err
