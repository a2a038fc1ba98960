"""A real tritonserver (from nvidia-pytriton) started, called over gRPC and stopped."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import pid_alive, pids_mentioning

from sae.serving.triton import ServerConfig, ServerStartError, TritonServer, find_tritonserver

find_tritonserver()  # a RuntimeError naming the missing serving extra fails the module, it does not skip it

import tritonclient.grpc as grpcclient  # noqa: E402

pytestmark = pytest.mark.server

ADD_ONE_CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: 8
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
"""

ADD_ONE_MODEL = """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            out = pb_utils.Tensor("OUTPUT0", (x + 1).astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
"""


def write_add_one(repository: Path, name: str = "add_one", config: str | None = None) -> Path:
    model_dir = repository / name
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "config.pbtxt").write_text(config if config is not None else ADD_ONE_CONFIG.format(name=name))
    (model_dir / "1" / "model.py").write_text(ADD_ONE_MODEL)
    return model_dir


def test_add_one_over_grpc_then_stop_leaves_nothing(tmp_path):
    repository = tmp_path / "models"
    write_add_one(repository)
    log_path = tmp_path / "server.log"
    server = TritonServer(ServerConfig(repository=repository, startup_timeout_s=60), log_path=log_path)

    t0 = time.perf_counter()
    with server:
        started_s = time.perf_counter() - t0
        assert server.is_running
        pid = server.pid
        workdir = server._workdir
        assert server.grpc_url.startswith("127.0.0.1:")
        assert server.metrics_url.startswith("http://127.0.0.1:") and server.metrics_url.endswith("/metrics")
        # the python backend runs one stub process for the single instance, in the server's process group
        stubs = [p for p in pids_mentioning(str(repository)) if p != pid]
        assert stubs, "no python-backend stub found for the model"

        client = grpcclient.InferenceServerClient(server.grpc_url)
        assert client.is_model_ready("add_one")
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        inputs = [grpcclient.InferInput("INPUT0", list(x.shape), "FP32")]
        inputs[0].set_data_from_numpy(x)
        result = client.infer("add_one", inputs, outputs=[grpcclient.InferRequestedOutput("OUTPUT0")])
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), x + 1)
        client.close()

        t1 = time.perf_counter()
        code = server.stop()
        stopped_s = time.perf_counter() - t1

    print(f"start {started_s:.2f} s, stop {stopped_s:.2f} s")
    assert code == 0
    assert not server.is_running and server.pid is None
    assert not pid_alive(pid)
    assert not any(pid_alive(stub) for stub in stubs)
    assert pids_mentioning(str(repository)) == []
    assert not workdir.exists(), "the backend directory of symlinks must be removed on stop"
    assert "add_one" in log_path.read_text()
    assert server.stop() == 0  # idempotent


def test_broken_model_makes_start_fail_with_its_name(tmp_path):
    repository = tmp_path / "models"
    write_add_one(repository, "add_one")
    # a name that tmp_path (derived from this test's name) does not contain, and a config that does not parse
    bad_config = 'name: "garbled"\nbackend: "python"\nmax_batch_size: 8\ninput [ { data_type: TYPE_NOPE } ]\n'
    write_add_one(repository, "garbled", config=bad_config)
    server = TritonServer(ServerConfig(repository=repository, startup_timeout_s=60))

    with pytest.raises(ServerStartError) as excinfo:
        server.start()

    assert "'garbled'" in excinfo.value.errors
    assert "'garbled'" in str(excinfo.value)
    assert not server.is_running
    assert pids_mentioning(str(repository)) == []


def test_non_loopback_host_is_refused(tmp_path):
    for host in ("0.0.0.0", "192.168.1.10", "example.com"):
        with pytest.raises(ValueError, match="loopback"):
            ServerConfig(repository=tmp_path, host=host)
    assert ServerConfig(repository=tmp_path, host="localhost").bind_address == "127.0.0.1"
