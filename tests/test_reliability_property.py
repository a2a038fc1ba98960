"""Property-based: generated tensors of random shapes, dtypes and values, through `clients.SAEClient` and straight
through raw `tritonclient.grpc`, to a real server. Each call ends in a correct answer or a clear error (the client's
InvalidInputError, or INVALID_ARGUMENT from the server), never a hang, a dead stub or a non-finite image."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from conftest import module_server
from helpers.reliability import raw_infer, stub_pids
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.utils import InferenceServerException

from sae.clients.triton_client import SAEClient
from sae.core.errors import InferenceError, InvalidInputError

pytestmark = [pytest.mark.server, pytest.mark.slow]

D, H = 12, 64
CALL_TIMEOUT_S = 20.0  # per call: a hang fails the call with DEADLINE_EXCEEDED, which the test refuses
EXAMPLES = 60
DTYPES = [np.uint8, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_]
# Each model's inputs: (name, dtype, shape without a batch axis, batched?)
CONTRACT = {
    "encode": [("IMAGE", np.uint8, (H, H, 3), True)],
    "decode": [("LATENT", np.float32, (D,), True)],
    "reconstruct": [("IMAGE", np.uint8, (H, H, 3), True)],
    "traverse": [
        ("LATENT", np.float32, (D,), False),
        ("DIMENSION", np.int64, (1,), False),
        ("STEPS", np.int64, (1,), False),
    ],
    "hybrid_sample": [("NUM_SAMPLES", np.int64, (1,), False), ("SEED", np.int64, (1,), False)],
}
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=30_000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def arrays(draw, dtype, shape, batched):
    """Mostly the contract's dtype and shape (so requests reach the models), else anything small."""
    if draw(st.integers(0, 4)) == 0:
        dtype = draw(st.sampled_from(DTYPES))
    if draw(st.integers(0, 4)) == 0:
        shape = tuple(draw(st.lists(st.integers(0, 70), min_size=0, max_size=4)))
    elif batched:
        shape = (draw(st.integers(0, 3)),) + tuple(shape)
    if int(np.prod(shape, dtype=np.int64)) > 200_000:
        shape = (1,) + tuple(shape[1:])[:2]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["zeros", "random", "small", "nan", "inf", "-inf", "huge", "extreme"]))
    if np.issubdtype(dtype, np.floating):
        values = {
            "zeros": np.zeros(shape),
            "random": rng.normal(size=shape),
            "small": rng.integers(-3, 70, shape),
            "nan": np.full(shape, np.nan),
            "inf": np.full(shape, np.inf),
            "-inf": np.full(shape, -np.inf),
            "huge": rng.normal(size=shape) * 1e30,
            "extreme": np.full(shape, np.finfo(dtype).max),
        }[kind]
        array = values.astype(dtype)
        if kind == "random" and array.size and rng.random() < 0.3:
            array.flat[rng.integers(array.size)] = np.nan  # one poisoned value among finite ones
        return array
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    info = np.iinfo(dtype)
    if kind in ("small", "zeros"):
        return (np.zeros(shape) if kind == "zeros" else rng.integers(-3, 70, shape)).astype(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


@st.composite
def raw_requests(draw):
    model = draw(st.sampled_from(sorted(CONTRACT)))
    inputs = {}
    for name, dtype, shape, batched in CONTRACT[model]:
        if draw(st.integers(0, 9)) == 0:
            continue  # a missing input
        inputs[name if draw(st.integers(0, 14)) else name.lower()] = draw(arrays(dtype, shape, batched))
    return model, inputs


def check_answer(outputs: dict[str, np.ndarray]) -> None:
    for name, array in outputs.items():
        if np.issubdtype(array.dtype, np.floating):
            assert np.isfinite(array).all(), f"{name} holds non-finite values"
        if name in ("IMAGE", "RECONSTRUCTION"):
            assert array.size and 0.0 <= array.min() and array.max() <= 1.0, name


@pytest.fixture(scope="module")
def server(exported_repo, tmp_path_factory):
    with module_server(exported_repo, tmp_path_factory, "property") as started:
        yield started


@pytest.fixture(scope="module")
def stubs(server):
    """The stub processes at the start; each test checks that none died or was replaced."""
    before = stub_pids(server)
    yield before
    assert stub_pids(server) == before


def test_raw_grpc_requests_get_an_answer_or_invalid_argument(server, stubs):
    raw = grpcclient.InferenceServerClient(server.grpc_url)

    @SETTINGS
    @given(raw_requests())
    def one(request):
        model, inputs = request
        try:
            result = raw_infer(raw, model, inputs, timeout_s=CALL_TIMEOUT_S)
        except InferenceServerException as e:
            if e.status() is None:  # tritonclient refused it before sending (e.g. a 0-d array)
                assert e.message(), e
                return
            assert str(e.status()) == "StatusCode.INVALID_ARGUMENT" and e.message(), (e.status(), e.message())
            return
        config = raw.get_model_config(model, as_json=True)["config"]
        check_answer(
            {
                o["name"]: result.as_numpy(o["name"])
                for o in config["output"]
                if result.as_numpy(o["name"]) is not None and o["data_type"] != "TYPE_STRING"
            }
        )

    try:
        one()
    finally:
        raw.close()
    assert stub_pids(server) == stubs


@st.composite
def client_calls(draw):
    method = draw(st.sampled_from(["encode", "decode", "reconstruct", "traverse", "sample"]))
    if method in ("encode", "reconstruct"):
        return method, (draw(arrays(np.uint8, (H, H, 3), True)),)
    if method == "decode":
        return method, (draw(arrays(np.float32, (D,), True)),)
    if method == "traverse":
        return method, (draw(arrays(np.float32, (D,), False)), draw(st.integers(-3, D + 2)), draw(st.integers(-3, 70)))
    n = draw(st.one_of(st.integers(-2, 300), st.floats(allow_nan=True), st.just(2**40)))
    return method, (n, draw(st.integers(-2, 2**63 - 1)))


def test_client_calls_get_an_answer_or_a_clear_error(server, stubs):
    client = SAEClient(server.grpc_url, timeout_s=CALL_TIMEOUT_S)

    @SETTINGS
    @given(client_calls())
    def one(call):
        method, args = call
        try:
            result = getattr(client, method)(*args)
        except InvalidInputError as e:
            assert e.input_name and e.input_name in str(e), str(e)
            return
        except InferenceError as e:
            assert e.status == "StatusCode.INVALID_ARGUMENT", (e.status, str(e))
            return
        if isinstance(result, np.ndarray):
            check_answer({"IMAGE" if method in ("decode", "reconstruct") else "LATENT": result})
        else:
            check_answer({"IMAGE": result.images, "LATENT": result.latents})

    try:
        one()
    finally:
        client.close()
