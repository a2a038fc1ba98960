"""Python-backend model that runs one exported TorchScript graph (``model.pt``) with PyTorch, on the GPU when the
instance is a GPU instance and torch sees CUDA, else on the CPU.

This is the served GPU path where the server has no onnxruntime-gpu, libtorch or TensorRT backend (the bundled
nvidia-pytriton server on a GPU machine): PyTorch inside the python backend. The request checks are the ONNX
template's (``onnx_model.py``, copied next to this file as ``REQUEST_CHECKS_FILE``), so both runtimes refuse the
same bad requests with the same messages.

Config parameters (all optional): ``torchscript_file`` (default ``model.pt``), ``intra_op_threads`` (torch threads
of a CPU instance, default 1), ``precision`` (``fp32``, or
``bf16``/``fp16`` autocast on CUDA), ``cuda_graph_batch_sizes`` (comma-separated batch sizes captured as CUDA
graphs at load; a batch of another size runs the plain graph).
"""

import importlib.util
import json
import os

import numpy as np

REQUEST_CHECKS_FILE = "onnx_model.py"
PRECISIONS = ("fp32", "bf16", "fp16")


def load_request_checks(folder: str):
    """The ONNX template's gather_inputs and check_output (and through it ``common``: BadRequest, bad_request),
    loaded from ``folder``."""
    path = os.path.join(folder, REQUEST_CHECKS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: the torch runtime shares the ONNX template's request checks")
    spec = importlib.util.spec_from_file_location("_sae_request_checks", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_batch_sizes(text: str) -> list[int]:
    """``"1,64"`` -> [1, 64]; an error names the parameter."""
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"parameter cuda_graph_batch_sizes must be comma-separated integers, got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise ValueError(f"parameter cuda_graph_batch_sizes must hold positive batch sizes, got {text!r}")
    return sizes


class TorchRunner:
    """One graph (a TorchScript or eager module, already on ``device``) with host arrays in and out; optional
    autocast and CUDA graphs for fixed batch sizes. benchmarks/gpu_check/check.py runs its in-process modes with it."""

    def __init__(self, module, device: str, precision: str = "fp32", graph_batch_sizes=(), example=None):
        import torch

        if precision not in PRECISIONS:
            raise ValueError(f"parameter precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.torch = torch
        self.device = torch.device(device)
        self.module = module
        on_cuda = self.device.type == "cuda"
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision) if on_cuda else None
        self.graphs: dict = {}  # batch size -> (graph, static input, static output)
        if on_cuda and graph_batch_sizes:
            if example is None:
                raise ValueError("CUDA graphs need an example row of the input")
            for batch in graph_batch_sizes:
                self.graphs[batch] = self._capture(np.repeat(example[None], batch, axis=0))

    def _forward(self, x):
        if self.autocast_dtype is None:
            return self.module(x)
        # No autocast weight cache: a CUDA graph would keep pointers into a cache freed when autocast exits.
        with self.torch.autocast("cuda", dtype=self.autocast_dtype, cache_enabled=False):
            return self.module(x).float()

    def _capture(self, batch: np.ndarray):
        torch = self.torch
        static_in = torch.from_numpy(batch).to(self.device)
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):  # warm-up on a side stream, as CUDA graph capture requires
                self._forward(static_in)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode():
            static_out = self._forward(static_in)
        return graph, static_in, static_out

    def run(self, array: np.ndarray) -> np.ndarray:
        torch = self.torch
        captured = self.graphs.get(len(array))
        with torch.inference_mode():
            if captured is not None:
                graph, static_in, static_out = captured
                static_in.copy_(torch.from_numpy(array), non_blocking=False)
                graph.replay()
                return static_out.cpu().numpy()
            x = torch.from_numpy(array).to(self.device, non_blocking=False)
            return self._forward(x).cpu().numpy()


class TritonPythonModel:
    def initialize(self, args):
        import torch
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        folder = os.path.join(args["model_repository"], args["model_version"])
        self.checks = load_request_checks(
            os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else folder
        )
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.model_name = args["model_name"]
        self.input_name = config["input"][0]["name"]
        self.input_dims = [int(d) for d in config["input"][0].get("dims", [])]
        self.input_dtype = pb_utils.triton_string_to_numpy(config["input"][0]["data_type"])
        self.output_name = config["output"][0]["name"]
        self.output_dtype = pb_utils.triton_string_to_numpy(config["output"][0]["data_type"])
        path = os.path.join(folder, params.get("torchscript_file", "model.pt"))
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"{self.model_name}: {path} is missing; run `sae export` first")
        on_gpu = args.get("model_instance_kind") == "GPU" and torch.cuda.is_available()
        device = f"cuda:{int(args['model_instance_device_id'])}" if on_gpu else "cpu"
        if not on_gpu:  # instances, not threads, scale on a small CPU (as for ONNX Runtime's intra_op_threads)
            torch.set_num_threads(int(params.get("intra_op_threads", "1")))
        example = np.zeros(self.input_dims, self.input_dtype)
        try:
            module = torch.jit.load(path, map_location=device).eval()
            self.runner = TorchRunner(
                module,
                device,
                params.get("precision", "fp32"),
                parse_batch_sizes(params.get("cuda_graph_batch_sizes", "")),
                example,
            )
        except ValueError as e:
            raise pb_utils.TritonModelException(f"{self.model_name}: {e}") from e

    def _error(self, message: str, invalid: bool = True):
        text = f"{self.model_name}: {message}"
        error = self.checks.common.bad_request(self.pb, text) if invalid else self.pb.TritonError(text)
        return self.pb.InferenceResponse(error=error)

    def execute(self, requests):
        pb, checks = self.pb, self.checks
        responses, good, arrays = checks.gather_inputs(pb, requests, self.input_name, self.input_dims, self._error)
        if not good:
            return responses
        try:
            batch = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
            out = self.runner.run(batch).astype(self.output_dtype, copy=False)
        except Exception as e:  # one bad request must not take the instance down
            for i in good:
                responses[i] = self._error(f"input {self.input_name}: {e}", invalid=False)
            return responses
        start = 0
        for i, array in zip(good, arrays):
            part = out[start : start + len(array)]
            start += len(array)
            try:
                checks.check_output(self.input_name, self.output_name, part)
                responses[i] = pb.InferenceResponse([pb.Tensor(self.output_name, part)])
            except checks.common.BadRequest as e:
                responses[i] = self._error(str(e))
        return responses
