"""`sae export`: checkpoint -> one model's set of Triton models in a model repository.

Writes ``NAME_encode``, ``NAME_decode`` (ONNX fp32 + fp16 + TorchScript, each checked against the eager model),
``NAME_reconstruct`` (the two graphs joined, checked against them run apart), ``NAME_sampler`` and
``NAME_traverse`` (python backend + the bank), and ``NAME_hybrid_sample`` (python flavour: the sampler's code with the
bank and the decoder graphs; native: one ONNX graph of draw and decoder), with configs generated for the model's
real dims (``export.triton_configs``). Models with a prior (the bank records it) also get ``NAME_prior_sampler`` and
``NAME_prior_sample``; re-exporting a name as a model without a prior removes that name's old prior models.

Everything is built in a staging folder beside the repository (same filesystem), optionally checked by a validator,
and only then moved in, one whole model folder at a time: each folder is swapped atomically with the one it replaces
(``renameat2(RENAME_EXCHANGE)``; two renames where the kernel lacks it), leaves before the ensembles that call them.
A server polling the repository, or restarted at any moment, sees each model either entirely old or entirely new.

Versions: the first export of a name writes version ``1/``; each re-export writes the next number into every model of
the set, keeps the previous ``KEPT_VERSIONS - 1`` version folders where the model's config is unchanged (hard links,
no copies) and serves the newest (``version_policy: latest 1``). Each version folder keeps the config it was exported
with (``CONFIG_COPY``), so :func:`rollback` (``sae export --rollback NAME``) removes the newest version and puts the
previous config back, again one atomic folder swap per model.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from clients.datasets import dataset_splits, open_dataset
from export.bank import DEFAULT_BANK_SIZE, Bank, build_bank
from export.composed import check_reconstruction, write_reconstruction_graph
from export.draw_graph import NATIVE_DRAW_MODES, hybrid_sample_model
from export.fp16 import write_fp16_onnx
from export.graphs import ONNX_OPSET, export_onnx, graph_specs
from export.parity import ParityResult, compare
from export.torchscript import export_torchscript
from export.triton_configs import (BANK_FILE, HYBRID_ONNX_FILE, HYBRID_ONNX_FP16_FILE, MANIFEST_FILE, ONNX_FILE,
                                   ONNX_FP16_FILE, PYTHON_FILE, TORCHSCRIPT_FILE, VERSION, RepositoryOptions,
                                   ServedShapes, config_text, model_configs)
from export.triton_templates import COMPANIONS, ONNX_MODEL, SAMPLER_MODEL, TRAVERSE_MODEL
from training.checkpoint import LAST, Checkpoint

EXPORT_PARITY_BATCHES = (1, 7)  # checked at every export; tests/test_parity.py adds 256
JOINED_GRAPH_TOLERANCE = 1e-5  # joined reconstruction graph vs encode and decode run apart: measured 0
KEPT_VERSIONS = 3  # version folders a model keeps: the newest and two to roll back to
CONFIG_COPY = "config.pbtxt.exported"  # in each version folder: the config.pbtxt it was exported with


class ExportError(RuntimeError):
    pass


@dataclass
class ExportReport:
    repository: Path
    export_name: str
    config_name: str
    step: int
    flavour: str
    models: list[str]
    parity: list[ParityResult] = field(default_factory=list)
    bank_size: int = 0
    version: int = 1  # the version folder written (every model of the set has it)

    @property
    def max_abs_diff(self) -> dict[str, float]:
        """Worst |eager - ONNX Runtime fp32| per graph (the figure `sae export` prints first)."""
        return {g: max(r.max_abs_diff for r in self.parity if r.graph == g and r.runtime == "onnx")
                for g in ("encode", "decode")}

    def worst(self) -> dict[str, float]:
        """Worst |diff| per graph and runtime."""
        out: dict[str, float] = {}
        for r in self.parity:
            key = f"{r.graph}/{r.runtime}"
            out[key] = max(out.get(key, 0.0), r.max_abs_diff)
        return out


def checkpoint_file(run: Path) -> Path:
    run = Path(run)
    return run / "checkpoints" / LAST if run.is_dir() else run


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directory entries atomically (Linux renameat2 with RENAME_EXCHANGE); False where unsupported."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, f"cannot swap {a} and {b}: {os.strerror(code)}")


def versions(model_dir: Path) -> list[int]:
    """The numbered version folders of a model, oldest first ([] for a missing folder)."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def read_manifest(model_dir: Path) -> dict | None:
    """The newest version's export.json."""
    found = versions(model_dir)
    path = model_dir / str(found[-1] if found else VERSION) / MANIFEST_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _check_ownership(repo: Path, options: RepositoryOptions) -> None:
    """Refuse to replace a model folder that another export name wrote (a name clash)."""
    for model in options.model_names().values():
        manifest = read_manifest(repo / model)
        if manifest is not None and manifest.get("export_name") != options.name:
            raise ExportError(f"{repo / model} belongs to the export named {manifest.get('export_name')!r}, not "
                              f"{options.name!r}; pick another --name")


def install(staging: Path, repo: Path, models: list[str]) -> None:
    """Move each staged model folder into ``repo``, replacing the old one atomically; old folders end in staging."""
    repo.mkdir(parents=True, exist_ok=True)
    for model in models:
        new, final = staging / model, repo / model
        if not final.exists():
            os.rename(new, final)
        elif not _exchange(new, final):
            os.rename(final, staging / f"{model}.old")
            os.rename(new, final)


def next_version(repo: Path, options: RepositoryOptions) -> int:
    """One more than the newest version of any model of this export name in ``repo`` (1 for a first export)."""
    newest = [max(versions(repo / model), default=0) for model in options.model_names().values()]
    return max(newest, default=0) + 1


def _config_body(path: Path) -> str | None:
    """config.pbtxt without its comment header (which names the source and version)."""
    if not path.is_file():
        return None
    return "\n".join(line for line in path.read_text().splitlines() if not line.startswith("#"))


def keep_previous(repo: Path, staging: Path, models: list[str], version: int) -> None:
    """Hard-link the previous versions (the newest ``KEPT_VERSIONS - 1``) of each model into its staged folder.

    Only where the new config equals the old one: one config.pbtxt describes every version folder of a model, so
    after a change of interface (dims, bank size, flavour) the old versions cannot be served, or rolled back to."""
    for model in models:
        if _config_body(repo / model / "config.pbtxt") != _config_body(staging / model / "config.pbtxt"):
            continue
        for old in [v for v in versions(repo / model) if v < version][-(KEPT_VERSIONS - 1):]:
            shutil.copytree(repo / model / str(old), staging / model / str(old), copy_function=os.link)


def rollback(repo: Path, name: str) -> tuple[int, int, list[str]]:
    """Serve the previous version of the export ``name`` again: drop every model's newest version folder and restore
    that version's config. Returns (from version, to version, models). Refused, changing nothing, when a model has
    no earlier version or the earlier one has no saved config."""
    repo = Path(repo)
    owned = sorted(p.name for p in repo.iterdir() if p.is_dir() and (read_manifest(p) or {}).get("export_name") == name) \
        if repo.is_dir() else []
    if not owned:
        raise ExportError(f"no model of the export named {name!r} in {repo}")
    newest = max(max(versions(repo / m)) for m in owned)
    for model in owned:
        earlier = [v for v in versions(repo / model) if v < newest]
        if not earlier:
            raise ExportError(f"cannot roll back {name!r}: {model} has no version before {newest}")
        if not (repo / model / str(earlier[-1]) / CONFIG_COPY).is_file():
            raise ExportError(f"cannot roll back {name!r}: {model}/{earlier[-1]} has no {CONFIG_COPY} (exported "
                              "before versioning); re-export that run instead")
    staging = Path(tempfile.mkdtemp(prefix=f".{repo.name}.rollback-", dir=repo.parent))
    try:
        for model in owned:
            kept = [v for v in versions(repo / model) if v < newest]
            (staging / model).mkdir()
            for v in kept:
                shutil.copytree(repo / model / str(v), staging / model / str(v), copy_function=os.link)
            shutil.copyfile(repo / model / str(kept[-1]) / CONFIG_COPY, staging / model / "config.pbtxt")
        install(staging, repo, owned)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    previous = max(max(versions(repo / m)) for m in owned)
    return newest, previous, owned


def retire(repo: Path, staging: Path, options: RepositoryOptions, roles: tuple[str, ...]) -> list[str]:
    """Move this export name's folders for ``roles`` (ensembles first) out of ``repo`` into ``staging``, where they
    are deleted with it; folders another export name wrote stay. Returns the models removed."""
    removed = []
    for role in reversed(roles):
        model = options.model_name(role)
        manifest = read_manifest(repo / model)
        if manifest is not None and manifest.get("export_name") == options.name:
            os.rename(repo / model, staging / f"{model}.retired")
            removed.append(model)
    return removed


def _manifest(options: RepositoryOptions, role: str, ckpt: Checkpoint, bank: Bank, parity: list[ParityResult],
              source: Path) -> str:
    import onnx
    import onnxruntime

    return json.dumps({
        "export_name": options.name, "model": options.model_name(role), "role": role, "flavour": options.flavour,
        "config_name": ckpt.config.name, "model_kind": ckpt.config.model.kind, "checkpoint": str(source),
        "checkpoint_sha256": bank.checkpoint_sha256, "checkpoint_step": ckpt.step, "data_sha256": bank.data_sha256,
        "bank_size": int(len(bank.latents)), "bank_seed": bank.seed, "onnx_opset": ONNX_OPSET,
        "torch_version": torch.__version__, "onnx_version": onnx.__version__,
        "onnxruntime_version": onnxruntime.__version__, "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "parity": [{"graph": r.graph, "runtime": r.runtime, "batch_size": r.batch_size,
                    "max_abs_diff": r.max_abs_diff} for r in parity],
    }, indent=2)


def _write_graphs(model, version_dirs: dict[str, Path], batch_sizes=EXPORT_PARITY_BATCHES) -> list[ParityResult]:
    """ONNX fp32, ONNX fp16 and TorchScript for encode and decode, each compared with the eager model."""
    results: list[ParityResult] = []
    for graph, spec in graph_specs(model).items():
        folder = version_dirs[graph]
        files = {"onnx": folder / ONNX_FILE, "onnx_fp16": folder / ONNX_FP16_FILE,
                 "torchscript": folder / TORCHSCRIPT_FILE}
        export_onnx(spec, files["onnx"])
        write_fp16_onnx(files["onnx"], files["onnx_fp16"])
        export_torchscript(spec, files["torchscript"])
        checked = compare(graph, spec, files, batch_sizes)
        failed = [str(r) for r in checked if not r.ok]
        if failed:
            raise ExportError("exported graph differs from the eager model: " + "; ".join(failed))
        results += checked
    return results


def _write_joined_graphs(options: RepositoryOptions, configs: dict, names: dict[str, str],
                         version_dirs: dict[str, Path], bank: Bank) -> None:
    """The one-hop models' graphs: the joined reconstruction graph (fp32, fp16); the decoder beside a python
    hybrid/prior sampler; the native hybrid_sample graph (draw + decoder)."""
    decode_dir = version_dirs["decode"]
    if configs[names["reconstruct"]].platform != "ensemble":
        folder, encode_dir = version_dirs["reconstruct"], version_dirs["encode"]
        for filename in (ONNX_FILE, ONNX_FP16_FILE):
            write_reconstruction_graph(encode_dir / filename, decode_dir / filename, folder / filename)
        size = configs[names["reconstruct"]].input[0].dims[0]
        images = np.random.default_rng(0).integers(0, 256, (7, size, size, 3), dtype=np.uint8)
        diff = check_reconstruction(encode_dir / ONNX_FILE, decode_dir / ONNX_FILE, folder / ONNX_FILE, images)
        if diff > JOINED_GRAPH_TOLERANCE:
            raise ExportError(f"the joined reconstruction graph differs from encode -> decode by {diff:.2e}")
    for role in ("hybrid_sample", "prior_sample"):
        config = configs.get(names.get(role, ""))
        if config is None or config.platform == "ensemble":
            continue
        if config.backend == "python":
            for filename in (ONNX_FILE, ONNX_FP16_FILE):
                shutil.copyfile(decode_dir / filename, version_dirs[role] / filename)
            continue
        for decoder, graph in ((ONNX_FILE, HYBRID_ONNX_FILE), (ONNX_FP16_FILE, HYBRID_ONNX_FP16_FILE)):
            model = hybrid_sample_model(onnx.load(str(decode_dir / decoder)), bank.latents, bank.variable_of_dim,
                                        config.output[0].dims[1], NATIVE_DRAW_MODES[0])
            onnx.save(model, str(version_dirs[role] / graph))


def export_run(run: Path, repo: Path, data_path: Path | None = None, bank_size: int = DEFAULT_BANK_SIZE,
               bank_seed: int = 0, name: str = "", flavour: str = "python",
               options: RepositoryOptions | None = None,
               validate: Callable[[Path], None] | None = None, range_images: int | None = None) -> ExportReport:
    """Export RUN (a run folder or a checkpoint file) into ``repo`` as the model set ``name``.

    ``options`` overrides ``name``/``flavour`` and carries the rest (native runtime, TensorRT, batching);
    ``validate(staging_repo)`` may raise to stop the export before anything in ``repo`` changes.
    ``range_images``: take the bank's per-dimension ranges over this many training images (default: all of them).
    """
    options = (options or RepositoryOptions(name=name, flavour=flavour)).validate()
    repo = Path(repo)
    source = checkpoint_file(run)
    ckpt = Checkpoint.load(run)
    cfg = ckpt.config
    model = ckpt.eval_model()
    data_path = data_path or (ckpt.extra or {}).get("data_path")
    if not data_path:
        raise ExportError("the checkpoint does not say which data it was trained on; pass --data FILE")
    data = open_dataset(Path(data_path), exclude=(ckpt.extra or {}).get("exclude"))
    if data.image_size != cfg.model.backbone.image_size:
        raise ExportError(f"{data_path} has {data.image_size}px images; {cfg.name} takes "
                          f"{cfg.model.backbone.image_size}px")
    if repo.exists():
        _check_ownership(repo, options)

    repo.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{repo.name}.export-", dir=repo.parent))
    try:
        names = options.model_names()
        version = next_version(repo, options)
        version_dirs = {role: staging / names[role] / str(version) for role in names}
        for role in ("encode", "decode"):
            version_dirs[role].mkdir(parents=True)
        parity = _write_graphs(model, version_dirs)
        bank = build_bank(model, cfg.name, data, dataset_splits(data)["train"], source, ckpt.step, bank_size,
                          bank_seed, range_images=range_images)
        shapes = ServedShapes(cfg.model.backbone.image_size, cfg.model.latent_dim, bank.num_variables,
                              bank_size=len(bank.latents), has_prior=bank.prior_mean is not None)
        roles = shapes.roles()
        for role in roles:
            version_dirs[role].mkdir(parents=True, exist_ok=True)
        configs = model_configs(shapes, options)
        python_models = {role for role in roles if configs[names[role]].backend == "python"}
        bank_users = [role for role in ("sampler", "prior_sampler", "traverse", "hybrid_sample", "prior_sample")
                      if role in python_models]
        bank.save(version_dirs[bank_users[0]] / BANK_FILE)
        for role in bank_users[1:]:
            shutil.copyfile(version_dirs[bank_users[0]] / BANK_FILE, version_dirs[role] / BANK_FILE)
        _write_joined_graphs(options, configs, names, version_dirs, bank)
        for role in python_models:
            template = TRAVERSE_MODEL if role == "traverse" else SAMPLER_MODEL if role in bank_users else ONNX_MODEL
            shutil.copyfile(template, version_dirs[role] / PYTHON_FILE)
            if template in (SAMPLER_MODEL, TRAVERSE_MODEL):
                for name, source in COMPANIONS.items():
                    shutil.copyfile(source, version_dirs[role] / name)
        for role in roles:
            model_dir = staging / names[role]
            (model_dir / "config.pbtxt").write_text(config_text(configs[names[role]], role, f"{cfg.name} step "
                                                                f"{ckpt.step} (version {version})"))
            shutil.copyfile(model_dir / "config.pbtxt", version_dirs[role] / CONFIG_COPY)
            (version_dirs[role] / MANIFEST_FILE).write_text(_manifest(options, role, ckpt, bank, parity, source))
        if validate is not None:
            validate(staging)
        order = [names[role] for role in roles]
        keep_previous(repo, staging, order, version)
        retire(repo, staging, options, tuple(r for r in names if r not in roles))
        install(staging, repo, order)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportReport(repo, options.name, cfg.name, ckpt.step, options.flavour, order, parity, len(bank.latents),
                        version)
