"""Python-backend model that runs one exported ONNX graph with ONNX Runtime (``NAME_encode``, ``NAME_decode``).

The tensor names come from the model's own config. The graph is the version folder's ``onnx_file`` (fp32) on CPU
instances, and ``gpu_onnx_file`` (the fp16 variant, fp32 inputs and outputs) with the CUDA execution provider on GPU
instances when onnxruntime-gpu is installed. Requests that Triton's dynamic batcher groups together run as one ONNX
Runtime call.

Triton itself refuses a wrong dtype, rank or size of the non-batch axes, and a batch above ``max_batch_size``, with
INVALID_ARGUMENT errors that name the input. What it cannot check is checked here, per request, so that one bad
request of a dynamic batch fails alone: an empty batch, NaN or infinite values in a float input (a NaN latent
would decode to a NaN image), and a non-finite output (a finite but huge latent can overflow the decoder).
"""

import importlib.util
import json
import os
import sys

import numpy as np

# The templates' shared helpers (repository/templates/common.py): copied beside this file as sae_common.py and
# loaded by path once per folder (this model and its companions share one BadRequest), or the package's module.
_COMMON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sae_common.py")
if not os.path.isfile(_COMMON):
    from sae.repository.templates import common
elif getattr(sys.modules.get("sae_common"), "__file__", None) == _COMMON:
    common = sys.modules["sae_common"]
else:
    _spec = importlib.util.spec_from_file_location("sae_common", _COMMON)
    if _spec is None or _spec.loader is None:
        raise ImportError(f"cannot load {_COMMON}")
    common = sys.modules["sae_common"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(common)


def check_input(name: str, array: np.ndarray, dims: list[int]) -> None:
    """Raise common.BadRequest unless ``array`` is a non-empty batch [N >= 1, *dims] of finite values (floats)."""
    if array.ndim != 1 + len(dims) or any(d >= 0 and s != d for s, d in zip(array.shape[1:], dims)):
        raise common.BadRequest(
            f"input {name} must have shape [N, {', '.join(map(str, dims))}], got {list(array.shape)}"
        )
    if array.shape[0] == 0:
        raise common.BadRequest(f"input {name} is an empty batch (shape {list(array.shape)}); send at least one row")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int(array.shape[0] - np.isfinite(array.reshape(len(array), -1)).all(axis=1).sum())
        raise common.BadRequest(
            f"input {name} must hold finite values; {bad} of {len(array)} rows contain NaN or infinity"
        )


def gather_inputs(pb, requests, input_name: str, dims: list[int], refuse) -> tuple[list, list[int], list]:
    """The checked input of each request of a dynamic batch, so that one bad request fails alone: (the responses,
    ``refuse(why)`` for each refused request and None for the others; the indices of the good requests; their
    arrays)."""
    responses: list = [None] * len(requests)
    good, arrays = [], []
    for i, request in enumerate(requests):
        tensor = pb.get_input_tensor_by_name(request, input_name)
        try:
            if tensor is None:
                raise common.BadRequest(f"input {input_name} is required")
            array = tensor.as_numpy()
            check_input(input_name, array, dims)
        except common.BadRequest as e:
            responses[i] = refuse(str(e))
            continue
        good.append(i)
        arrays.append(array)
    return responses, good, arrays


TOO_LARGE = "the values are too large for the model"  # how a refusal of finite but overflowing input begins


def check_output(input_name: str, output_name: str, array: np.ndarray) -> None:
    if not is_finite(array):
        raise common.BadRequest(
            f"input {input_name}: {TOO_LARGE}, its output {output_name} is not finite; send "
            "values in the range the encoder produces"
        )


def is_finite(array: np.ndarray) -> bool:
    """True unless a float array holds NaN or infinity."""
    return not np.issubdtype(array.dtype, np.floating) or bool(np.isfinite(array).all())


def session_options(ort, params: dict):
    """ONNX Runtime settings of a served instance from its config parameters (the in-process baseline of `sae
    bench` reads the same ones): one intra-op thread by default (instances, not threads, scale on a small CPU),
    the CPU arena (``cpu_mem_arena``), and spinning of the intra-op pool (``allow_spinning``, only with threads > 1).
    Denormals as zero and IO binding measured no gain at batch 1 and 64 on the CPU and are not used
    (docs/performance.md)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(params.get("intra_op_threads", "1"))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ONNX Runtime's CPU arena keeps the largest batch's buffers for reuse; "0" frees them after each run.
    options.enable_cpu_mem_arena = params.get("cpu_mem_arena", "1") != "0"
    if "allow_spinning" in params:
        options.add_session_config_entry("session.intra_op.allow_spinning", params["allow_spinning"])
    return options


def open_session(args, params: dict, model_name: str):
    """The ONNX Runtime session of a python-backend model: ``gpu_onnx_file`` with the CUDA provider on a GPU
    instance (when onnxruntime-gpu is installed), else ``onnx_file`` on the CPU; every model that runs an exported
    graph in-process opens it here."""
    import onnxruntime as ort
    import triton_python_backend_utils as pb_utils

    on_gpu = args.get("model_instance_kind") == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers()
    filename = (
        params.get("gpu_onnx_file", params.get("onnx_file", "model.onnx"))
        if on_gpu
        else params.get("onnx_file", "model.onnx")
    )
    path = os.path.join(args["model_repository"], args["model_version"], filename)
    if not os.path.isfile(path):
        raise pb_utils.TritonModelException(f"{model_name}: {path} is missing; run `sae export` first")
    options = session_options(ort, params)
    providers: list[str | tuple[str, dict[str, int]]] = ["CPUExecutionProvider"]
    if on_gpu:
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(args["model_instance_device_id"])}))
    return ort.InferenceSession(path, options, providers=providers)


class TritonPythonModel:
    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.model_name = args["model_name"]
        self.input_name = config["input"][0]["name"]
        self.input_dims = [int(d) for d in config["input"][0].get("dims", [])]
        self.output_name = config["output"][0]["name"]
        self.output_dtype = pb_utils.triton_string_to_numpy(config["output"][0]["data_type"])
        self.session = open_session(args, params, self.model_name)
        self.graph_input = self.session.get_inputs()[0].name
        self.graph_outputs = [self.session.get_outputs()[0].name]

    def _error(self, message: str, invalid: bool = True):
        text = f"{self.model_name}: {message}"
        error = common.bad_request(self.pb, text) if invalid else self.pb.TritonError(text)
        return self.pb.InferenceResponse(error=error)

    def execute(self, requests):
        pb = self.pb
        responses, good, arrays = gather_inputs(pb, requests, self.input_name, self.input_dims, self._error)
        if not good:
            return responses
        try:
            batch = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
            out = self.session.run(self.graph_outputs, {self.graph_input: batch})[0]
            out = out.astype(self.output_dtype, copy=False)
        except Exception as e:  # one bad request must not take the instance down
            for i in good:
                responses[i] = self._error(f"input {self.input_name}: {e}", invalid=False)
            return responses
        all_finite = is_finite(out)  # one pass over the batch; each request is checked only if it fails
        start = 0
        for i, array in zip(good, arrays):
            part = out[start : start + len(array)]  # a view: pb.Tensor makes the one copy, into shared memory
            start += len(array)
            try:
                if not all_finite:
                    check_output(self.input_name, self.output_name, part)
                responses[i] = pb.InferenceResponse([pb.Tensor(self.output_name, part)])
            except common.BadRequest as e:
                responses[i] = self._error(str(e))
        return responses
