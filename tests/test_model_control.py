"""`sae load` / `sae unload` against a real tritonserver in explicit model-control mode (`sae serve
--model-control explicit`), and the client's advice when a set is unloaded."""

from __future__ import annotations

import pytest
from conftest import start_explicit_server

from sae.cli import main
from sae.clients.triton_client import SAEClient
from sae.core import wire
from sae.core.errors import ModelNotServedError

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def explicit_server(exported_repo, tmp_path_factory):
    server = start_explicit_server(exported_repo, tmp_path_factory.mktemp("explicit"))
    yield server
    server.stop()


def ready_models(url: str) -> set[str]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        return {
            m["name"] for m in client.get_model_repository_index(as_json=True)["models"] if m.get("state") == "READY"
        }
    finally:
        client.close()


def test_unload_then_load_a_set_changes_what_is_served(explicit_server, capsys):
    url = explicit_server.grpc_url
    every_role = ready_models(url)
    assert {wire.ENCODE, wire.DECODE, wire.HYBRID_SAMPLE} <= every_role  # --load-model=*: all loaded at start

    assert main(["unload", "", "--url", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("unloaded the unprefixed set: hybrid_sample")  # ensembles first
    assert not ready_models(url) & every_role
    with SAEClient(url) as client:
        with pytest.raises(ModelNotServedError, match=r"not loaded .*unloaded.*`sae load ''`"):
            client.wait_ready(timeout_s=10)

    assert main(["load", "", "--url", url]) == 0
    assert capsys.readouterr().out.startswith("loaded the unprefixed set: encode, decode")  # leaves first
    assert ready_models(url) == every_role
    with SAEClient(url) as client:
        client.wait_ready(timeout_s=30)
        samples = client.sample(4, seed=3)
        assert samples.images.shape[0] == 4 and samples.latents.shape[0] == 4


def test_unload_all_and_load_all(explicit_server, capsys):
    url = explicit_server.grpc_url
    before = ready_models(url)
    assert main(["unload", "--all", "--url", url]) == 0
    assert not ready_models(url)
    assert main(["load", "--all", "--url", url]) == 0
    assert ready_models(url) == before
    capsys.readouterr()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["load", "nosuch"], "no model set 'nosuch' in the repository of"),
        (["load", "", "--all"], "name one model set"),
        (["unload"], "name one model set"),
    ],
)
def test_bad_requests_are_one_line_and_exit_2(explicit_server, capsys, argv, message):
    code = main([*argv, "--url", explicit_server.grpc_url])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err


def test_load_on_a_server_without_explicit_control_is_refused_with_the_flag_to_use(triton, capsys):
    code = main(["unload", "", "--url", triton.grpc_url])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "could not unload" in err and "--model-control explicit" in err, err  # the server refused
    assert wire.HYBRID_SAMPLE in ready_models(triton.grpc_url)
