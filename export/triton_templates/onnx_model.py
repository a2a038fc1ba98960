"""Python-backend model that runs one exported ONNX graph with ONNX Runtime (``NAME_encode``, ``NAME_decode``).

The tensor names come from the model's own config. The graph is the version folder's ``onnx_file`` (fp32) on CPU
instances, and ``gpu_onnx_file`` (the fp16 variant, fp32 inputs and outputs) with the CUDA execution provider on GPU
instances when onnxruntime-gpu is installed. Requests that Triton's dynamic batcher groups together run as one ONNX
Runtime call.
"""
import json
import os

import numpy as np


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.model_name = args["model_name"]
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        self.output_dtype = pb_utils.triton_string_to_numpy(config["output"][0]["data_type"])
        on_gpu = args.get("model_instance_kind") == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers()
        filename = params.get("gpu_onnx_file", params.get("onnx_file", "model.onnx")) if on_gpu else \
            params.get("onnx_file", "model.onnx")
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"{self.model_name}: {path} is missing; run `sae export` first")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "1"))
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if on_gpu:
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(args["model_instance_device_id"])}))
        self.session = ort.InferenceSession(path, options, providers=providers)
        self.graph_input = self.session.get_inputs()[0].name

    def execute(self, requests):
        pb = self.pb
        arrays = [pb.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        sizes = [len(a) for a in arrays]
        try:
            batch = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
            out = self.session.run(None, {self.graph_input: batch})[0].astype(self.output_dtype, copy=False)
        except Exception as e:  # one bad request must not take the instance down
            error = pb.TritonError(f"{self.model_name}: input {self.input_name}: {e}")
            return [pb.InferenceResponse(error=error) for _ in requests]
        return [pb.InferenceResponse([pb.Tensor(self.output_name, part)])
                for part in np.split(out, np.cumsum(sizes)[:-1])]
