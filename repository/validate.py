"""`sae validate --repo DIR`: check a Triton model repository without starting a server.

Every ``config.pbtxt`` is parsed with Triton's own protobuf definitions (``tritonclient.grpc.model_config_pb2``),
then matched against what it points at:

* ONNX files (``onnxruntime_onnx`` platform, or a python model's ``onnx_file``/``gpu_onnx_file`` parameter): input
  and output names, data types and dims, with a dynamic batch axis when ``max_batch_size > 0``;
* TorchScript files (``pytorch_libtorch``): loaded and run on a zero input of the configured shape, outputs checked;
* python models: ``model.py`` present; the bank (``bank.h5``) of samplers and traversers matches their dims (and
  the sampler's ``bank_size``); a prior sampler (``latents_from: prior``) has a bank with the prior's mean and std;
  a sampler that also decodes (``onnx_file``: ``NAME_hybrid_sample``, ``NAME_prior_sample``) has a decoder graph
  that maps its LATENT output to its IMAGE output, and the companion modules it imports; a BLS target
  (``decode_model`` parameter) exists and takes the latents;
* ``draw_modes`` parameters name known draw modes, and only one unless the model takes DRAW;
* ensembles: every step's model exists, its input/output maps name real tensors of that model, every mapped tensor
  is an ensemble input or produced by a step, every ensemble output is produced, and dtypes and shapes agree.

Each problem names the model and the config field: ``decode: input LATENT dims: config [10], model.onnx [batch, 12]``.
This module holds the repository walk, the per-model, python-backend and ensemble checks and the public entry points;
the ONNX and TorchScript file checks and the :class:`Problem` record are in :mod:`sae.repository.model_files`.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from sae.core import wire
from sae.core.bank_file import BANK_FILE, BankFile, BankFileError
from sae.core.draw import DRAW_MODES
from sae.core.errors import SAEError
from sae.core.model_config import read_config
from sae.repository.model_files import FileChecker, Problem, dtype_name, full_shape, shapes_compatible
from sae.repository.templates import COMPANIONS


class RepositoryInvalid(SAEError, ValueError):
    def __init__(self, repo: Path, problems: list[Problem]):
        self.problems = problems
        super().__init__(f"model repository {repo} is invalid:\n" + "\n".join(f"  {p}" for p in problems))


def version_dirs(model_dir: Path) -> list[Path]:
    return sorted((p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def _model_kind(config: pb.ModelConfig) -> str:
    if config.platform == "ensemble":
        return "ensemble"
    return config.platform or config.backend


class _Checker(FileChecker):
    def __init__(self, repo: Path):
        super().__init__(repo)
        self.configs: dict[str, pb.ModelConfig] = {}

    # ------------------------------------------------------------------------------------------- whole repository

    def run(self) -> list[Problem]:
        if not self.repo.is_dir():
            self.add(str(self.repo), "repository", "not a directory")
            return self.problems
        folders = sorted(p for p in self.repo.iterdir() if p.is_dir())
        for folder in folders:
            path = folder / "config.pbtxt"
            if not path.is_file():
                self.add(folder.name, "config.pbtxt", f"missing: Triton treats every folder of {self.repo} as a model")
                continue
            try:
                self.configs[folder.name] = read_config(path)
            except (text_format.ParseError, UnicodeDecodeError) as e:
                self.add(folder.name, "config.pbtxt", f"does not parse as a Triton ModelConfig: {e}")
        for name, config in self.configs.items():
            self.check_model(name, config)
        return self.problems

    # ------------------------------------------------------------------------------------------- one model

    def check_model(self, folder: str, config: pb.ModelConfig) -> None:
        name = config.name or folder
        if config.name != folder:
            self.add(folder, "name", f"config says {config.name!r}, but the folder is {folder!r}")
        if config.max_batch_size < 0:
            self.add(name, "max_batch_size", f"must be >= 0, got {config.max_batch_size}")
        if config.max_batch_size == 0 and config.HasField("dynamic_batching"):
            self.add(name, "dynamic_batching", "needs max_batch_size > 0")
        for kind, tensors in (("input", config.input), ("output", config.output)):
            seen = set()
            for t in tensors:
                if t.name in seen:
                    self.add(name, f"{kind} {t.name}", "declared twice")
                seen.add(t.name)
                if not t.dims or any(d == 0 or d < -1 for d in t.dims):
                    self.add(name, f"{kind} {t.name} dims", f"{list(t.dims)}: each dim must be positive or -1")
        self.check_draw_modes(name, config)
        versions = version_dirs(self.repo / folder)
        if not versions:
            self.add(name, "version folder", f"no numbered version folder in {self.repo / folder}")
        kind = _model_kind(config)
        if kind == "ensemble":
            self.check_ensemble(name, config)
            return
        if not kind:
            self.add(name, "platform/backend", "neither is set")
            return
        for version in versions:
            if kind in ("onnxruntime_onnx", "onnxruntime"):
                self.check_onnx(
                    name, config, version / (config.default_model_filename or "model.onnx"), "default_model_filename"
                )
            elif kind in ("pytorch_libtorch", "pytorch"):
                self.check_torchscript(name, config, version / (config.default_model_filename or "model.pt"))
            elif kind == "python":
                self.check_python(name, config, version)
            else:
                self.add(name, "platform/backend", f"{kind!r}: files not checked", "warning")

    # ------------------------------------------------------------------------------------------- python backend

    def check_draw_modes(self, name: str, config: pb.ModelConfig) -> None:
        if wire.DRAW_MODES_PARAM not in config.parameters:
            return
        field = f"parameters.{wire.DRAW_MODES_PARAM}"
        modes = config.parameters[wire.DRAW_MODES_PARAM].string_value.split(",")
        unknown = [m for m in modes if m not in DRAW_MODES]
        if unknown or not modes:
            self.add(name, field, f"{unknown or modes}: each must be one of {', '.join(DRAW_MODES)}")
        elif len(modes) > 1 and not any(t.name == wire.DRAW for t in config.input):
            self.add(name, field, f"lists {', '.join(modes)}, but without a DRAW input a request cannot choose one")

    def check_python(self, name: str, config: pb.ModelConfig, version: Path) -> None:
        self._file(name, "backend", version / "model.py")
        params = {k: v.string_value for k, v in config.parameters.items()}
        samples = wire.MAX_SAMPLES_PARAM in params
        for key in ("onnx_file", "gpu_onnx_file"):
            if key in params and samples:
                self.check_decoder(name, config, version / params[key], f"parameters.{key}")
            elif key in params:
                self.check_onnx(name, config, version / params[key], f"parameters.{key}")
        if samples and ("onnx_file" in params or wire.DECODE_MODEL_PARAM in params):
            for companion in COMPANIONS:
                self._file(name, "backend", version / companion)
        if params.get(wire.LATENTS_FROM_PARAM, wire.FROM_BANK) not in (wire.FROM_BANK, wire.FROM_PRIOR):
            self.add(
                name,
                f"parameters.{wire.LATENTS_FROM_PARAM}",
                f"{params[wire.LATENTS_FROM_PARAM]!r}: must be {wire.FROM_BANK} or {wire.FROM_PRIOR}",
            )
        if samples or wire.DECODE_MODEL_PARAM in params:
            self.check_bank(name, config, version / BANK_FILE)
        if wire.DECODE_MODEL_PARAM in params:
            self.check_bls_target(name, config, params[wire.DECODE_MODEL_PARAM])

    def check_decoder(self, name: str, config: pb.ModelConfig, path: Path, field: str) -> None:
        """The decoder graph of a sampler that decodes: LATENT [batch, D] -> IMAGE [batch, H, W, 3], the dims of
        the model's own LATENT and IMAGE outputs; IMAGE_U8 (uint8) has IMAGE's dims."""
        outputs = {t.name: t for t in config.output}
        if wire.LATENT not in outputs or wire.IMAGE not in outputs:
            self.add(
                name, "output", f"a sampler with a decoder graph must declare outputs {wire.LATENT} and {wire.IMAGE}"
            )
            return
        image = outputs[wire.IMAGE]
        u8_type = wire.tensor(wire.HYBRID_SAMPLE, "output", wire.IMAGE_U8).dtype
        if wire.IMAGE_U8 in outputs and (
            list(outputs[wire.IMAGE_U8].dims) != list(image.dims)
            or dtype_name(outputs[wire.IMAGE_U8].data_type) != u8_type
        ):
            self.add(
                name,
                f"output {wire.IMAGE_U8}",
                f"must be {u8_type} with {wire.IMAGE}'s dims {list(image.dims)}, "
                f"config {dtype_name(outputs[wire.IMAGE_U8].data_type)} "
                f"{list(outputs[wire.IMAGE_U8].dims)}",
            )
        latent = outputs[wire.LATENT]
        decoder = pb.ModelConfig(
            name=name,
            max_batch_size=1,
            input=[pb.ModelInput(name=wire.LATENT, data_type=latent.data_type, dims=list(latent.dims)[1:])],
            output=[pb.ModelOutput(name=wire.IMAGE, data_type=image.data_type, dims=list(image.dims)[1:])],
        )
        self.check_onnx(name, decoder, path, field)

    def check_bank(self, name: str, config: pb.ModelConfig, path: Path) -> None:
        if not self._file(name, "bank", path):
            return
        import numpy as np

        params = {k: v.string_value for k, v in config.parameters.items()}
        try:
            bank = BankFile.read(path)
        except BankFileError as e:
            self.add(name, "bank", f"{path.name} is not a readable bank: {e}")
            return
        num_stored, dim = bank.latents.shape
        for kind, tensors in (("input", config.input), ("output", config.output)):
            for t in tensors:
                if t.name in (wire.LATENT, wire.BASE) and t.dims[-1] != dim:
                    self.add(
                        name,
                        f"{kind} {t.name} dims",
                        f"config {list(t.dims)}, {path.name} holds {dim}-dimensional latents",
                    )
                if t.name == wire.MASK and list(t.dims) != [bank.num_variables]:
                    self.add(
                        name,
                        f"{kind} {wire.MASK} dims",
                        f"config {list(t.dims)}, {path.name} has {bank.num_variables} variables",
                    )
        size = params.get(wire.BANK_SIZE_PARAM)
        if size is not None and size != str(num_stored):
            self.add(
                name, f"parameters.{wire.BANK_SIZE_PARAM}", f"config {size}, {path.name} holds {num_stored} latents"
            )
        if params.get(wire.LATENTS_FROM_PARAM) == wire.FROM_PRIOR:
            prior = {
                k: np.asarray(getattr(bank, k)) for k in ("prior_mean", "prior_std") if getattr(bank, k) is not None
            }
            shapes = {k: v.shape for k, v in prior.items()}
            if shapes != {"prior_mean": (dim,), "prior_std": (dim,)}:
                self.add(
                    name,
                    "bank",
                    f"{path.name} has no prior of {dim} dimensions (prior_mean, prior_std; found "
                    f"{shapes or 'none'}): only a model with a prior can serve prior samples",
                )
            elif not (
                np.isfinite(prior["prior_mean"]).all()
                and np.isfinite(prior["prior_std"]).all()
                and (prior["prior_std"] > 0).all()
            ):
                self.add(name, "bank", f"{path.name}: prior_mean must be finite and prior_std finite and positive")

    def check_bls_target(self, name: str, config: pb.ModelConfig, target: str) -> None:
        field = f"parameters.{wire.DECODE_MODEL_PARAM}"
        other = self.configs.get(target)
        if other is None:
            self.add(name, field, f"names model {target!r}, which is not in the repository")
            return
        latent_in = next((t for t in other.input if t.name == wire.LATENT), None)
        latent_out = next((t for t in config.output if t.name == wire.LATENT), None)
        if latent_in is None:
            self.add(name, field, f"{target} has no {wire.LATENT} input")
        elif latent_out is not None and not shapes_compatible(full_shape(other, latent_in.dims), list(latent_out.dims)):
            self.add(
                name,
                field,
                f"{target} takes {wire.LATENT} {full_shape(other, latent_in.dims)}, this model makes "
                f"{list(latent_out.dims)}",
            )

    # ------------------------------------------------------------------------------------------- ensembles

    def check_ensemble(self, name: str, config: pb.ModelConfig) -> None:
        steps = config.ensemble_scheduling.step
        if not steps:
            self.add(name, "ensemble_scheduling", "has no steps")
            return
        ensemble_inputs = {t.name: t for t in config.input}
        producers: dict[str, tuple[pb.ModelConfig, pb.ModelOutput, str]] = {}
        for i, step in enumerate(steps):
            field = f"ensemble_scheduling.step[{i}]"
            component = self.configs.get(step.model_name)
            if component is None:
                self.add(name, f"{field}.model_name", f"{step.model_name!r} is not a model in the repository")
                continue
            if 0 < component.max_batch_size < config.max_batch_size:
                self.add(
                    name,
                    "max_batch_size",
                    f"{config.max_batch_size} exceeds step {step.model_name}'s {component.max_batch_size}",
                )
            outputs = {t.name: t for t in component.output}
            for key, tensor in step.output_map.items():
                if key not in outputs:
                    self.add(
                        name,
                        f"{field}.output_map[{key}]",
                        f"{step.model_name} has no output {key!r} (it has {sorted(outputs)})",
                    )
                elif tensor in producers:
                    self.add(name, f"{field}.output_map[{key}]", f"ensemble tensor {tensor!r} is produced twice")
                else:
                    producers[tensor] = (component, outputs[key], step.model_name)
        for i, step in enumerate(steps):
            field = f"ensemble_scheduling.step[{i}]"
            component = self.configs.get(step.model_name)
            if component is None:
                continue
            inputs = {t.name: t for t in component.input}
            for t in component.input:
                if not t.optional and t.name not in step.input_map:
                    self.add(
                        name, f"{field}.input_map", f"required input {t.name!r} of {step.model_name} is not mapped"
                    )
            for key, tensor in step.input_map.items():
                if key not in inputs:
                    self.add(
                        name,
                        f"{field}.input_map[{key}]",
                        f"{step.model_name} has no input {key!r} (it has {sorted(inputs)})",
                    )
                    continue
                want = (dtype_name(inputs[key].data_type), full_shape(component, inputs[key].dims))
                if tensor in ensemble_inputs:
                    src = ensemble_inputs[tensor]
                    have = (dtype_name(src.data_type), full_shape(config, src.dims))
                    what = f"ensemble input {tensor}"
                elif tensor in producers:
                    producer, out, producer_name = producers[tensor]
                    have = (dtype_name(out.data_type), full_shape(producer, out.dims))
                    what = f"{producer_name} output {out.name}"
                else:
                    self.add(
                        name,
                        f"{field}.input_map[{key}]",
                        f"maps tensor {tensor!r}, which no step produces and which is not an ensemble input",
                    )
                    continue
                self._match(name, f"{field}.input_map[{key}]", what, have, f"{step.model_name} input {key}", want)
        consumed = {tensor for step in steps for tensor in step.input_map.values()} | {t.name for t in config.output}
        for tensor, (_, _, producer_name) in sorted(producers.items()):
            if tensor not in consumed:
                self.add(
                    name, "ensemble_scheduling", f"{producer_name} produces {tensor!r}, which nothing uses", "warning"
                )
        for t in config.output:
            if t.name not in producers:
                self.add(name, f"output {t.name}", "no step's output_map produces it")
                continue
            producer, out, producer_name = producers[t.name]
            self._match(
                name,
                f"output {t.name}",
                f"{producer_name} output {out.name}",
                (dtype_name(out.data_type), full_shape(producer, out.dims)),
                "the ensemble output",
                (dtype_name(t.data_type), full_shape(config, t.dims)),
            )

    def _match(self, name: str, field: str, what: str, have: tuple, target: str, want: tuple) -> None:
        if have[0] != want[0]:
            self.add(name, field, f"{what} is {have[0]}, {target} is {want[0]}")
        elif not shapes_compatible(have[1], want[1]):
            self.add(name, field, f"{what} has shape {have[1]}, {target} takes {want[1]}")


def validate_repository(repo: Path) -> list[Problem]:
    """Every problem found (errors and warnings); an empty list means the repository is consistent."""
    return _Checker(Path(repo)).run()


def check_repository(repo: Path) -> list[Problem]:
    """Raise RepositoryInvalid if there is any error; return the warnings."""
    problems = validate_repository(repo)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise RepositoryInvalid(Path(repo), errors)
    return problems
