"""The Triton configs of one exported model, generated with its real dims (the wire contract in the README).

``model_configs(shapes, options)`` returns ``{folder name: ModelConfig}`` for the set ``NAME_encode``,
``NAME_decode``, ``NAME_reconstruct``, ``NAME_hybrid_sample``, ``NAME_traverse`` and the draw-only ``NAME_sampler``
(latents without images), and for models with a prior ``NAME_prior_sample`` with the draw-only
``NAME_prior_sampler``; an empty NAME gives the unprefixed names. Sampling and reconstruction are one model each, not
ensembles (each python-backend hop costs about 1 ms): ``NAME_reconstruct`` runs the encoder and decoder joined into
one ONNX graph (``export/composed.py``), ``NAME_hybrid_sample`` draws and decodes in one model. Two flavours:

* ``python``: encode/decode/reconstruct are python-backend models running ONNX Runtime
  (``repository/templates/onnx_model.py``), instance kind KIND_AUTO (a GPU when the server has one, else the CPU);
  ``NAME_hybrid_sample`` and ``NAME_prior_sample`` are the sampler's python model (every draw mode, BASE/MASK) that
  decodes its latents through a BLS call into ``NAME_decode``, whose dynamic batcher merges concurrent sampling
  requests into one decoder run (``ServingSettings.sample_decoding``: ``bls``; ``in_process`` puts the decoder graph
  in the sampler's process instead: one hop fewer, no merging). Runs with the server bundled in nvidia-pytriton.
* ``native``: encode/decode/reconstruct use the ``onnxruntime_onnx`` (or ``pytorch_libtorch``; reconstruct then
  stays an ensemble) platform with KIND_GPU instances and, optionally, the TensorRT accelerator; for NVIDIA's stock
  container. ``NAME_hybrid_sample`` is one ONNX graph (the counter-based draw with the bank as an initializer, then
  the decoder; ``export/draw_graph.py``) serving the draw modes its ``draw_modes`` parameter lists (independent) and
  no BASE/MASK; the samplers, ``NAME_prior_sample`` (an ensemble) and traverse stay python.

Images come as fp32 ``IMAGE``; ``NAME_hybrid_sample`` also offers ``IMAGE_U8`` (uint8, ``round(clip(IMAGE, 0, 1) *
255)``, core/draw.py ``to_uint8``) as an output a client may request instead of, or beside, ``IMAGE``.

The batching values come from measurements (README, "Serving configuration"; ``benchmarks/tune_batching.py``;
docs/serving.md, "Batching of the sampling models"). Each generated config.pbtxt states its batching and queue
policy in its header (``repository/pbtxt.py``, :func:`sae.repository.pbtxt.batching_policy`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tritonclient.grpc import model_config_pb2 as pb

from sae.core import wire
from sae.core.draw import DRAW_MODES, NATIVE_DRAW_MODES
from sae.core.errors import SAEError
from sae.repository.layout import HYBRID_ONNX_FILE, HYBRID_ONNX_FP16_FILE, ONNX_FILE, ONNX_FP16_FILE, TORCHSCRIPT_FILE

ROLES, PRIOR_ROLES = wire.ROLES, wire.PRIOR_ROLES  # leaves before ensembles; served only with a prior
FLAVOURS = ("python", "native")
NATIVE_RUNTIMES = ("onnxruntime", "libtorch")
GPU_PRECISIONS = ("fp16", "fp32")
BLS, IN_PROCESS = "bls", "in_process"
SAMPLE_DECODINGS = (BLS, IN_PROCESS)  # how the python flavour's sampling models decode (ServingSettings)
ENSEMBLE_LATENT = "latent"  # the libtorch reconstruct ensemble's tensor between encode and decode (internal)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class ConfigError(SAEError, ValueError):
    pass


@dataclass(frozen=True)
class ServedShapes:
    image_size: int  # H = W
    latent_dim: int  # D
    num_variables: int  # k of the bank's partition (SAE-k: k; unstructured: D)
    bank_size: int = 0  # N stored latents (0: not recorded in the sampler's config)
    has_prior: bool = False  # the model has a prior (VAE family, WAE): NAME_prior_sample is served

    def roles(self) -> tuple[str, ...]:
        """The roles this model is served with, leaves before ensembles."""
        return tuple(r for r in ROLES if self.has_prior or r not in PRIOR_ROLES)


@dataclass(frozen=True)
class BatchedModelSettings:
    """Batching and instances of encode or decode. Each value is measured (benchmarks/tune_batching.py, one change
    at a time from an empty dynamic_batching); the figures are in README.md, "Serving configuration"."""

    max_batch_size: int = 256  # the contract: hybrid_sample sends up to 256 latents to decode as one batch
    max_queue_delay_us: int = 0  # empty `dynamic_batching { }`: a delay added 0.7-3 ms to lone requests, no throughput
    preferred_batch_sizes: tuple[int, ...] = ()  # measured no gain
    instances: int = 2  # 2 instances x 1 thread: ~2x the throughput of 1 x 2 at 8 clients; a 3rd added nothing
    intra_op_threads: int = 1  # ONNX Runtime threads per instance (python flavour); 2 threads were slower
    warmup_batch_sizes: tuple[int, ...] = (1, 8)  # the first request after load: ~150-650 ms cold, ~3-13 ms warm


@dataclass(frozen=True)
class ServingSettings:
    encode: BatchedModelSettings = field(default_factory=BatchedModelSettings)
    # decode also runs the sampling models' latents (BLS): it gets the 2 instances hybrid_sample had when it decoded
    # in its own process, so the decoder sessions stay 4 in all; with 2, a 32-client mixed load starved direct
    # decode requests (p99 13x) and halved the total req/s (docs/performance.md, "Sampling under concurrency").
    decode: BatchedModelSettings = field(default_factory=lambda: BatchedModelSettings(instances=4))
    reconstruct: BatchedModelSettings = field(default_factory=BatchedModelSettings)
    sampler_instances: int = 1  # a 256-sample draw takes ~7 ms, small next to decoding the 256 images
    prior_sampler_instances: int = 1  # a 256-sample normal draw is cheaper still
    # How the python flavour's hybrid_sample and prior_sample decode: BLS into NAME_decode, whose dynamic batcher
    # merges concurrent requests (docs/serving.md, "Batching of the sampling models"), or in_process (the decoder
    # graph in the sampler's process, each request decoded alone).
    sample_decoding: str = BLS
    # BLS: an instance only draws and waits on decode, so the instances bound how many requests decode can merge
    # (8: 16 clients merge ~3-4 requests per decode run on 2 decode instances); in_process: as many as decode has (2).
    hybrid_sample_instances: int = 8
    prior_sample_instances: int = 4
    # traverse also only prepares latents and waits on decode (BLS); with 1 instance it was the model that starved
    # under a 32-client mixed load (p50 880 ms against 14-47 ms for the others; docs/performance.md)
    traverse_instances: int = 4


@dataclass(frozen=True)
class RepositoryOptions:
    name: str = ""  # "" -> encode, decode, ...; "sae12" -> sae12_encode, ...
    flavour: str = "python"
    native_runtime: str = "onnxruntime"  # native flavour: onnxruntime_onnx or pytorch_libtorch platform
    tensorrt: bool = False  # native onnxruntime: TensorRT execution accelerator
    gpu_precision: str = "fp16"  # GPU instances run model_fp16.onnx (or TensorRT in FP16 mode)
    max_samples: int = wire.DEFAULT_MAX_SAMPLES  # NUM_SAMPLES limit of hybrid_sample and prior_sample
    max_traverse_steps: int = wire.TRAVERSE_STEPS[1]
    serving: ServingSettings = field(default_factory=ServingSettings)

    def validate(self) -> RepositoryOptions:
        if self.name and not NAME_PATTERN.match(self.name):
            raise ConfigError(
                f"--name {self.name!r}: use up to 64 letters, digits, '_' and '-', starting with a "
                "letter or digit (it prefixes the model names: NAME_encode, ...)"
            )
        for arg, value, allowed in (
            ("--flavour", self.flavour, FLAVOURS),
            ("--native-runtime", self.native_runtime, NATIVE_RUNTIMES),
            ("--gpu-precision", self.gpu_precision, GPU_PRECISIONS),
        ):
            if value not in allowed:
                raise ConfigError(f"{arg} {value!r}: choose one of {', '.join(allowed)}")
        if self.tensorrt and (self.flavour != "native" or self.native_runtime != "onnxruntime"):
            raise ConfigError("--tensorrt applies to the native flavour with the onnxruntime runtime only")
        for role in (wire.ENCODE, wire.DECODE, wire.RECONSTRUCT):
            s: BatchedModelSettings = getattr(self.serving, role)
            if s.max_batch_size < 1 or s.instances < 1 or s.max_queue_delay_us < 0:
                raise ConfigError(f"{role}: max_batch_size and instances must be positive, queue delay >= 0: {s}")
        if self.serving.sample_decoding not in SAMPLE_DECODINGS:
            raise ConfigError(
                f"sample_decoding {self.serving.sample_decoding!r}: choose one of {', '.join(SAMPLE_DECODINGS)}"
            )
        if min(self.serving.hybrid_sample_instances, self.serving.prior_sample_instances) < 1:
            raise ConfigError("hybrid_sample_instances and prior_sample_instances must be positive")
        if not 1 <= self.max_samples <= self.serving.decode.max_batch_size:
            raise ConfigError(
                f"max_samples {self.max_samples} must be in 1..decode max_batch_size "
                f"({self.serving.decode.max_batch_size}): the sampler's latents go to decode as one "
                "batch"
            )
        if not wire.TRAVERSE_STEPS[0] <= self.max_traverse_steps <= self.serving.decode.max_batch_size:
            raise ConfigError(
                f"max_traverse_steps {self.max_traverse_steps} must be in {wire.TRAVERSE_STEPS[0]}.."
                "decode max_batch_size"
            )
        return self

    def model_name(self, role: str) -> str:
        return wire.served_name(self.name, role)

    def model_names(self, roles: tuple[str, ...] = ROLES) -> dict[str, str]:
        return {role: self.model_name(role) for role in roles}


# ------------------------------------------------------------------------------------------------------ helpers


def _input(name: str, dtype: str, dims: list[int], optional: bool = False) -> pb.ModelInput:
    return pb.ModelInput(name=name, data_type=pb.DataType.Value(dtype), dims=dims, optional=optional)


def _output(name: str, dtype: str, dims: list[int]) -> pb.ModelOutput:
    return pb.ModelOutput(name=name, data_type=pb.DataType.Value(dtype), dims=dims)


def _params(config: pb.ModelConfig, values: dict[str, object]) -> None:
    for key, value in values.items():
        config.parameters[key].string_value = str(value)


def _onnx_runtime_params(options: RepositoryOptions, s: BatchedModelSettings) -> dict[str, object]:
    """The ONNX Runtime runner's parameters (``repository/templates/onnx_model.py``): the fp32 graph for CPU
    instances, the GPU graph and the intra-op threads."""
    gpu_file = ONNX_FP16_FILE if options.gpu_precision == "fp16" else ONNX_FILE
    return {"onnx_file": ONNX_FILE, "gpu_onnx_file": gpu_file, "intra_op_threads": s.intra_op_threads}


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> pb.ModelEnsembling.Step:
    return pb.ModelEnsembling.Step(model_name=model, model_version=-1, input_map=inputs, output_map=outputs)


def _batching(config: pb.ModelConfig, s: BatchedModelSettings) -> None:
    config.max_batch_size = s.max_batch_size
    config.dynamic_batching.SetInParent()  # `dynamic_batching { }` even with no field set
    if s.max_queue_delay_us:
        config.dynamic_batching.max_queue_delay_microseconds = s.max_queue_delay_us
    config.dynamic_batching.preferred_batch_size.extend(s.preferred_batch_sizes)


def _warmup(config: pb.ModelConfig, s: BatchedModelSettings, name: str, dtype: str, dims: list[int]) -> None:
    for b in s.warmup_batch_sizes:
        # Zeros, not Triton's random_data: its random bytes read as floats include NaN and values near 1e38,
        # which the models refuse (a NaN latent, a decoder output that overflows), so the warmup would fail.
        data = {"zero_data": True}
        config.model_warmup.append(
            pb.ModelWarmup(
                name=f"batch_{b}",
                batch_size=b,
                count=1,
                inputs={name: pb.ModelWarmup.Input(data_type=pb.DataType.Value(dtype), dims=dims, **data)},
            )
        )


def _tensors(role: str, kind: str, shapes: ServedShapes, names: tuple[str, ...] | None = None) -> list:
    """The contract's (core/wire.py) inputs or outputs of ``role`` for this model's dims, in the contract's
    order; ``names``: only those."""
    table = wire.ROLE_TENSORS[role]
    made = []
    for t in table.inputs if kind == "input" else table.outputs:
        if names is None or t.name in names:
            dims = wire.resolve_dims(t.dims, shapes.image_size, shapes.latent_dim, shapes.num_variables)
            made.append(
                _input(t.name, t.dtype, dims, t.optional) if kind == "input" else _output(t.name, t.dtype, dims)
            )
    return made


def _python_cpu_model(options: RepositoryOptions, role: str, shapes: ServedShapes, instances: int) -> pb.ModelConfig:
    """A python-backend model on CPU instances without batching (sampler, prior_sampler, traverse)."""
    config = pb.ModelConfig(
        name=options.model_name(role),
        backend="python",
        max_batch_size=0,
        input=_tensors(role, "input", shapes),
        output=_tensors(role, "output", shapes),
    )
    config.instance_group.append(pb.ModelInstanceGroup(kind=pb.ModelInstanceGroup.KIND_CPU, count=instances))
    return config


def _graph_model(
    options: RepositoryOptions, role: str, shapes: ServedShapes, s: BatchedModelSettings
) -> pb.ModelConfig:
    """A batching graph model (encode, decode, reconstruct): one input, one output."""
    (graph_input,), outputs = _tensors(role, "input", shapes), _tensors(role, "output", shapes)
    config = pb.ModelConfig(name=options.model_name(role), input=[graph_input], output=outputs)
    _batching(config, s)
    if options.flavour == "python":
        config.backend = "python"
        config.instance_group.append(pb.ModelInstanceGroup(kind=pb.ModelInstanceGroup.KIND_AUTO, count=s.instances))
        _params(config, _onnx_runtime_params(options, s))
    else:
        config.instance_group.append(pb.ModelInstanceGroup(kind=pb.ModelInstanceGroup.KIND_GPU, count=s.instances))
        if options.native_runtime == "libtorch":
            config.platform = "pytorch_libtorch"
            config.default_model_filename = TORCHSCRIPT_FILE
        else:
            config.platform = "onnxruntime_onnx"
            fp16_graph = options.gpu_precision == "fp16" and not options.tensorrt  # TensorRT makes its own fp16
            config.default_model_filename = ONNX_FP16_FILE if fp16_graph else ONNX_FILE
            if options.tensorrt:
                trt = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
                trt.parameters["precision_mode"] = options.gpu_precision.upper()
                trt.parameters["max_workspace_size_bytes"] = str(1 << 30)
    _warmup(config, s, graph_input.name, pb.DataType.Name(graph_input.data_type), list(graph_input.dims))
    return config


# ------------------------------------------------------------------------------------------------------ configs


def model_configs(shapes: ServedShapes, options: RepositoryOptions) -> dict[str, pb.ModelConfig]:
    options.validate()
    h = shapes.image_size
    image = [h, h, 3]
    names = options.model_names()
    s = options.serving
    configs = {role: _graph_model(options, role, shapes, getattr(s, role)) for role in (wire.ENCODE, wire.DECODE)}

    sampler = _python_cpu_model(options, wire.SAMPLER, shapes, s.sampler_instances)
    _params(sampler, {wire.LATENTS_FROM_PARAM: wire.FROM_BANK, wire.MAX_SAMPLES_PARAM: options.max_samples})
    if shapes.bank_size:
        _params(sampler, {wire.BANK_SIZE_PARAM: shapes.bank_size})
    configs[wire.SAMPLER] = sampler

    traverse = _python_cpu_model(options, wire.TRAVERSE, shapes, s.traverse_instances)
    _params(
        traverse,
        {
            wire.DECODE_MODEL_PARAM: names[wire.DECODE],
            wire.MIN_STEPS_PARAM: wire.TRAVERSE_STEPS[0],
            wire.MAX_STEPS_PARAM: options.max_traverse_steps,
        },
    )
    configs[wire.TRAVERSE] = traverse

    configs[wire.RECONSTRUCT] = _reconstruct(options, shapes)
    configs[wire.HYBRID_SAMPLE] = _hybrid_sample(options, shapes, sampler)
    if shapes.has_prior:
        prior = _python_cpu_model(options, wire.PRIOR_SAMPLER, shapes, s.prior_sampler_instances)
        _params(prior, {wire.LATENTS_FROM_PARAM: wire.FROM_PRIOR, wire.MAX_SAMPLES_PARAM: options.max_samples})
        configs[wire.PRIOR_SAMPLER] = prior
        if options.flavour == "python":
            configs[wire.PRIOR_SAMPLE] = _one_hop_sampler(
                options, wire.PRIOR_SAMPLE, shapes, prior, s.prior_sample_instances
            )
        else:
            configs[wire.PRIOR_SAMPLE] = sampling_ensemble(
                names[wire.PRIOR_SAMPLE], names[wire.PRIOR_SAMPLER], names[wire.DECODE], prior, image
            )
    for config in configs.values():
        config.version_policy.latest.num_versions = 1  # the newest version folder: each re-export adds one
    return {names[role]: configs[role] for role in shapes.roles()}


def _reconstruct(options: RepositoryOptions, shapes: ServedShapes) -> pb.ModelConfig:
    """One graph model on the joined encoder and decoder; an ensemble encode -> decode where the native runtime is
    libtorch (no joined TorchScript file is written)."""
    names = options.model_names()
    if options.flavour == "python" or options.native_runtime == "onnxruntime":
        return _graph_model(options, wire.RECONSTRUCT, shapes, options.serving.reconstruct)
    s = options.serving
    config = pb.ModelConfig(
        name=names[wire.RECONSTRUCT],
        platform="ensemble",
        max_batch_size=min(s.encode.max_batch_size, s.decode.max_batch_size),
        input=_tensors(wire.RECONSTRUCT, "input", shapes),
        output=_tensors(wire.RECONSTRUCT, "output", shapes),
    )
    config.ensemble_scheduling.step.extend(
        [
            _step(names[wire.ENCODE], {wire.IMAGE: wire.IMAGE}, {wire.LATENT: ENSEMBLE_LATENT}),
            _step(names[wire.DECODE], {wire.LATENT: ENSEMBLE_LATENT}, {wire.IMAGE: wire.RECONSTRUCTION}),
        ]
    )
    return config


def _one_hop_sampler(
    options: RepositoryOptions, role: str, shapes: ServedShapes, sampler: pb.ModelConfig, instances: int
) -> pb.ModelConfig:
    """The sampler's python model that also decodes (python flavour): the role's inputs and outputs (IMAGE_U8 too
    for hybrid_sample; prior_sample keeps the contract its native ensemble serves) and the sampler's parameters, and
    either ``decode_model`` (BLS into the batched decode: CPU instances, they only draw and wait) or the decoder
    graph's ``onnx_file`` (in the process: KIND_AUTO, a GPU where the server has one)."""
    config = pb.ModelConfig(
        name=options.model_name(role),
        backend="python",
        max_batch_size=0,
        input=_tensors(role, "input", shapes),
        output=_tensors(role, "output", shapes),
    )
    for key, value in sampler.parameters.items():
        config.parameters[key].string_value = value.string_value
    if options.serving.sample_decoding == BLS:
        config.instance_group.append(pb.ModelInstanceGroup(kind=pb.ModelInstanceGroup.KIND_CPU, count=instances))
        _params(config, {wire.DECODE_MODEL_PARAM: options.model_name(wire.DECODE)})
        return config
    config.instance_group.append(pb.ModelInstanceGroup(kind=pb.ModelInstanceGroup.KIND_AUTO, count=instances))
    _params(config, _onnx_runtime_params(options, options.serving.decode))
    return config


def _hybrid_sample(options: RepositoryOptions, shapes: ServedShapes, sampler: pb.ModelConfig) -> pb.ModelConfig:
    s = options.serving
    if options.flavour == "python":
        config = _one_hop_sampler(options, wire.HYBRID_SAMPLE, shapes, sampler, s.hybrid_sample_instances)
        _params(config, {wire.DRAW_MODES_PARAM: ",".join(DRAW_MODES)})
        return config
    required = tuple(t.name for t in wire.ROLE_TENSORS[wire.HYBRID_SAMPLE].inputs if not t.optional)
    config = pb.ModelConfig(
        name=options.model_name(wire.HYBRID_SAMPLE),
        platform="onnxruntime_onnx",
        max_batch_size=0,
        input=_tensors(wire.HYBRID_SAMPLE, "input", shapes, required),
        output=_tensors(wire.HYBRID_SAMPLE, "output", shapes),
    )
    fp16_graph = options.gpu_precision == "fp16"
    config.default_model_filename = HYBRID_ONNX_FP16_FILE if fp16_graph else HYBRID_ONNX_FILE
    config.instance_group.append(
        pb.ModelInstanceGroup(kind=pb.ModelInstanceGroup.KIND_GPU, count=s.hybrid_sample_instances)
    )
    _params(config, {wire.DRAW_MODES_PARAM: ",".join(NATIVE_DRAW_MODES), wire.MAX_SAMPLES_PARAM: options.max_samples})
    if shapes.bank_size:
        _params(config, {wire.BANK_SIZE_PARAM: shapes.bank_size})
    return config


def sampling_ensemble(
    name: str, sampler_name: str, decode_name: str, sampler: pb.ModelConfig, image: list[int]
) -> pb.ModelConfig:
    """sampler -> decode: the sampler's inputs and outputs, plus the decoded IMAGE."""
    config = pb.ModelConfig(
        name=name,
        platform="ensemble",
        max_batch_size=0,
        input=list(sampler.input),
        output=[
            _output(wire.IMAGE, wire.tensor(wire.PRIOR_SAMPLE, "output", wire.IMAGE).dtype, [-1, *image]),
            *sampler.output,
        ],
    )
    config.ensemble_scheduling.step.extend(
        [
            _step(sampler_name, {t.name: t.name for t in sampler.input}, {t.name: t.name for t in sampler.output}),
            _step(decode_name, {wire.LATENT: wire.LATENT}, {wire.IMAGE: wire.IMAGE}),
        ]
    )
    return config
