"""Python-backend model that runs one ONNX graph with ONNX Runtime.

Shared by ``encode`` and ``decode`` (``decode/1/model.py`` links here): the tensor names come from the model's own
config, and the graph is the ``model.onnx`` that ``sae export`` writes beside this file. Requests that Triton's
dynamic batcher groups together run as one ONNX Runtime call.
"""
import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        self.output_dtype = pb_utils.triton_string_to_numpy(config["output"][0]["data_type"])
        path = os.path.join(args["model_repository"], args["model_version"], params.get("onnx_file", "model.onnx"))
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"{args['model_name']}: {path} is missing; run `sae export` first")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "1"))
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(args["model_instance_device_id"])}))
        self.session = ort.InferenceSession(path, options, providers=providers)
        self.graph_input = self.session.get_inputs()[0].name

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        sizes = [len(a) for a in arrays]
        try:
            batch = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
            out = self.session.run(None, {self.graph_input: batch})[0].astype(self.output_dtype, copy=False)
        except Exception as e:  # one bad request must not take the instance down
            error = pb_utils.TritonError(f"{self.input_name}: {e}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        responses = []
        for part in np.split(out, np.cumsum(sizes)[:-1]):
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.output_name, part)]))
        return responses
