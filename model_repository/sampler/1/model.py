"""Hybrid sampler (Leeb et al., 2023, section 3.2), as a Triton python-backend model.

The bank holds N latent vectors encoded from the training set and a partition of the latent dimensions into
variables. A new latent takes each variable (or each dimension) from an independently chosen stored vector, so it
follows the product of the marginals of the learned code without any prior. The draw owns its randomness: one
``numpy.random.Generator`` per request, seeded from SEED, so the same SEED gives the same latents on any runtime.
"""
import json
import os

import numpy as np


def draw_hybrid(bank: np.ndarray, variable_of_dim: np.ndarray, num_samples: int, seed: int,
                per_dimension: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Return (latents [n, D] float32, source index [n, groups] int64).

    ``variable_of_dim[d]`` is the variable that latent dimension d belongs to. Per variable, the dimensions of one
    variable come from the same stored vector; per dimension, every dimension is drawn on its own. Within one sample,
    the groups come from distinct stored vectors (sampling without replacement) when the bank has enough of them,
    so no sample is a mere copy of part of one training latent.
    """
    num_stored, dim = bank.shape
    groups = np.arange(dim) if per_dimension else variable_of_dim
    num_groups = int(groups.max()) + 1
    rng = np.random.default_rng(seed)
    if num_groups <= num_stored:
        source = np.argsort(rng.random((num_samples, num_stored)), axis=1)[:, :num_groups]
    else:
        source = rng.integers(0, num_stored, size=(num_samples, num_groups))
    latents = bank[source[:, groups], np.arange(dim)]
    return latents.astype(np.float32), source.astype(np.int64)


def load_bank(path: str) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as f:
        return np.asarray(f["latents"], np.float32), np.asarray(f["variable_of_dim"], np.int64)


class TritonPythonModel:
    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.max_samples = int(params.get("max_samples", "256"))
        path = os.path.join(args["model_repository"], args["model_version"], "bank.h5")
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"{args['model_name']}: {path} is missing; run `sae export` first")
        self.bank, self.variable_of_dim = load_bank(path)

    def _scalar(self, request, name, default=None):
        tensor = self.pb.get_input_tensor_by_name(request, name)
        if tensor is None:
            return default
        value = tensor.as_numpy().reshape(-1)
        if value.size != 1:
            raise ValueError(f"{name} must hold exactly one value, got shape {list(tensor.as_numpy().shape)}")
        return value[0]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                n = int(self._scalar(request, "NUM_SAMPLES"))
                if not 1 <= n <= self.max_samples:
                    raise ValueError(f"NUM_SAMPLES must be in 1..{self.max_samples}, got {n}; split larger requests")
                seed = int(self._scalar(request, "SEED"))
                if seed < 0:
                    raise ValueError(f"SEED must be non-negative, got {seed}")
                per_dim = bool(self._scalar(request, "PER_DIMENSION", False))
                latents, source = draw_hybrid(self.bank, self.variable_of_dim, n, seed, per_dim)
                responses.append(self.pb.InferenceResponse([self.pb.Tensor("LATENT", latents),
                                                            self.pb.Tensor("SOURCE_INDEX", source)]))
            except ValueError as e:
                responses.append(self.pb.InferenceResponse(error=self.pb.TritonError(str(e))))
        return responses
