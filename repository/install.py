"""A staged model set swapped into a repository: checked, atomic per model folder, versioned, reversible.

A model set is built in a staging folder beside the repository (same filesystem), checked by the validator, and only
then moved in, one whole model folder at a time: each folder is swapped atomically with the one it replaces
(``renameat2(RENAME_EXCHANGE)``; two renames where the kernel lacks it), leaves before the ensembles that call them.
A server polling the repository, or restarted at any moment, sees each model either entirely old or entirely new.

Versions: the first export of a name writes version ``1/``; each re-export writes the next number into every model of
the set, keeps the previous ``KEPT_VERSIONS - 1`` version folders where the model's config is unchanged (hard links,
no copies) and serves the newest (``version_policy: latest 1``). Each version folder keeps the config it was exported
with (``CONFIG_COPY``), so :func:`rollback` removes the newest version and puts the previous config back, again one
atomic folder swap per model.

A kill between two folder swaps leaves some models of the set new and the rest old, each whole (and, between the two
renames of the fallback, one model's folder out of the repository); the plan each install leaves in its staging
folder (``repository.install_plan``) lets the next export, rollback or ``sae validate`` finish it
(:func:`finish_interrupted`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from sae.core import wire
from sae.core.errors import SAEError
from sae.repository.configs import RepositoryOptions
from sae.repository.install_plan import (
    InstallPlan,
    abandoned_staging,
    inode,
    locked_staging,
    read_plan,
    remove_plan,
    write_plan,
)
from sae.repository.layout import CONFIG_COPY, CONFIG_FILE, PYTHON_FILE, read_manifest, versions
from sae.repository.pbtxt import config_text
from sae.repository.templates import COMMON, COMMON_FILE, COMPANIONS, ONNX_MODEL, SAMPLER_MODEL, TRAVERSE_MODEL
from sae.repository.validate import check_repository

KEPT_VERSIONS = 3  # version folders a model keeps: the newest and two to roll back to
# the python models that read bank.h5
BANK_ROLES = (wire.SAMPLER, wire.PRIOR_SAMPLER, wire.TRAVERSE, wire.HYBRID_SAMPLE, wire.PRIOR_SAMPLE)


class InstallError(SAEError, RuntimeError):
    """A model set cannot be installed (a name clash) or rolled back; the repository is unchanged."""


class RollbackRefused(InstallError, ValueError):
    """The rollback asked for cannot be done: no such export, or no earlier version to go back to (an input error)."""


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


def check_ownership(repo: Path, options: RepositoryOptions) -> None:
    """Refuse to replace a model folder that another export name wrote (a name clash)."""
    for model in options.model_names().values():
        manifest = read_manifest(repo / model)
        if manifest is not None and manifest.get("export_name") != options.name:
            raise InstallError(
                f"{repo / model} belongs to the export named {manifest.get('export_name')!r}, not "
                f"{options.name!r}; pick another --name"
            )


def staging_folder(repo: Path, purpose: str = "export") -> AbstractContextManager[Path]:
    """An empty folder beside ``repo`` (so that moving out of it is a rename), removed with whatever is left in it;
    locked while in use, so that :func:`finish_interrupted` tells it from the folder of an install that died."""
    return locked_staging(repo, purpose)


def _move_in(staging: Path, repo: Path, model: str, staged_inode: int) -> None:
    """Put the staged folder of ``model`` (known by its inode) in the repository, replacing the old one atomically
    (the old folder ends in staging); nothing to do where it is in already. Repeatable after a kill at any point."""
    new, final = staging / model, repo / model
    if inode(final) == staged_inode:
        return
    if inode(new) != staged_inode:
        raise InstallError(f"the staged folder of {model} is missing from {staging}")
    if not final.exists():  # a new model, or the second rename of an interrupted fallback
        os.rename(new, final)
    elif not _exchange(new, final):
        os.rename(final, staging / f"{model}.old")
        os.rename(new, final)


def _carry_out(staging: Path, repo: Path, plan: InstallPlan) -> None:
    for model, retired_inode in plan.retired.items():
        if inode(repo / model) == retired_inode:
            os.rename(repo / model, staging / f"{model}.retired")
    for model in plan.models:
        _move_in(staging, repo, model, plan.staged[model])


def install(staging: Path, repo: Path, models: list[str], retired: tuple[str, ...] | list[str] = ()) -> None:
    """Move the folders ``retired`` out of ``repo`` (those that are there), then each staged model folder in,
    replacing the old one atomically; old folders end in staging. The plan written first lets
    :func:`finish_interrupted` complete an install killed at any step."""
    repo.mkdir(parents=True, exist_ok=True)
    staged = {m: inode(staging / m) for m in models}
    missing = [m for m, staged_inode in staged.items() if staged_inode is None]
    if missing:
        raise InstallError(f"nothing staged for {', '.join(missing)} in {staging}")
    plan = InstallPlan(
        str(repo.resolve()),
        list(models),
        {m: i for m, i in staged.items() if i is not None},
        {m: i for m in retired if (i := inode(repo / m)) is not None},
    )
    write_plan(staging, plan)
    _carry_out(staging, repo, plan)
    remove_plan(staging)


def finish_interrupted(repo: Path) -> list[str]:
    """Complete each install into ``repo`` that a kill interrupted (its staging folder is left beside ``repo``,
    with its plan and no live owner), so that the repository holds that whole new set; remove the staging folders
    of installs that died before moving anything. Returns the models of the installs finished."""
    repo = Path(repo)
    finished = []
    for staging in abandoned_staging(repo):
        plan = read_plan(staging)
        if plan is not None:
            if Path(plan.repo) != repo.resolve():
                continue
            _carry_out(staging, repo, plan)
            finished += plan.models
        shutil.rmtree(staging, ignore_errors=True)
    return finished


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
        if _config_body(repo / model / CONFIG_FILE) != _config_body(staging / model / CONFIG_FILE):
            continue
        for old in [v for v in versions(repo / model) if v < version][-(KEPT_VERSIONS - 1) :]:
            shutil.copytree(repo / model / str(old), staging / model / str(old), copy_function=os.link)


def rollback(repo: Path, name: str) -> tuple[int, int, list[str]]:
    """Serve the previous version of the export ``name`` again: drop every model's newest version folder and restore
    that version's config. Returns (from version, to version, models). Refused, changing nothing, when a model has
    no earlier version or the earlier one has no saved config. An install a kill interrupted is finished first."""
    repo = Path(repo)
    finish_interrupted(repo)
    owned = (
        sorted(p.name for p in repo.iterdir() if p.is_dir() and (read_manifest(p) or {}).get("export_name") == name)
        if repo.is_dir()
        else []
    )
    if not owned:
        raise RollbackRefused(f"no model of the export named {name!r} in {repo}")
    newest = max(max(versions(repo / m)) for m in owned)
    for model in owned:
        earlier = [v for v in versions(repo / model) if v < newest]
        if not earlier:
            raise RollbackRefused(f"cannot roll back {name!r}: {model} has no version before {newest}")
        if not (repo / model / str(earlier[-1]) / CONFIG_COPY).is_file():
            raise RollbackRefused(
                f"cannot roll back {name!r}: {model}/{earlier[-1]} has no {CONFIG_COPY} (exported "
                "before versioning); re-export that run instead"
            )
    with staging_folder(repo, "rollback") as staging:
        for model in owned:
            kept = [v for v in versions(repo / model) if v < newest]
            (staging / model).mkdir()
            for v in kept:
                shutil.copytree(repo / model / str(v), staging / model / str(v), copy_function=os.link)
            shutil.copyfile(repo / model / str(kept[-1]) / CONFIG_COPY, staging / model / CONFIG_FILE)
        install(staging, repo, owned)
    previous = max(max(versions(repo / m)) for m in owned)
    return newest, previous, owned


def to_retire(repo: Path, options: RepositoryOptions, roles: tuple[str, ...]) -> list[str]:
    """This export name's folders for ``roles`` (ensembles first) in ``repo``: what :func:`install` moves out into
    staging, where they are deleted with it; folders another export name wrote stay."""
    retired = []
    for role in reversed(roles):
        model = options.model_name(role)
        manifest = read_manifest(repo / model)
        if manifest is not None and manifest.get("export_name") == options.name:
            retired.append(model)
    return retired


def bank_roles(python_roles: set[str]) -> list[str]:
    """The python models of a set that read ``bank.h5``, in the order the bank is written and copied."""
    return [role for role in BANK_ROLES if role in python_roles]


def write_python_backend(role: str, version_dir: Path) -> None:
    """``model.py`` of a python model (the traverser, a sampler that reads the bank, or the ONNX Runtime runner),
    with the companion modules it imports beside it: all of them for the sampler and the traverser, the templates'
    common module for the ONNX Runtime runner."""
    template = TRAVERSE_MODEL if role == wire.TRAVERSE else SAMPLER_MODEL if role in BANK_ROLES else ONNX_MODEL
    shutil.copyfile(template, version_dir / PYTHON_FILE)
    companions = COMPANIONS if template in (SAMPLER_MODEL, TRAVERSE_MODEL) else {COMMON_FILE: COMMON}
    for name, source in companions.items():
        shutil.copyfile(source, version_dir / name)


def write_config(model_dir: Path, version_dir: Path, config, role: str, source: str) -> None:
    """The model's ``config.pbtxt``, and its copy in the version folder (what :func:`rollback` restores)."""
    (model_dir / CONFIG_FILE).write_text(config_text(config, role, source))
    shutil.copyfile(model_dir / CONFIG_FILE, version_dir / CONFIG_COPY)


def install_model_set(
    staging: Path,
    repo: Path,
    options: RepositoryOptions,
    roles: tuple[str, ...],
    version: int,
    validate: Callable[[Path], object] | None = check_repository,
) -> list[str]:
    """Check the staged set (``validate(staging)`` raises to stop before anything in ``repo`` changes), hard-link
    the versions kept, retire this name's models the set no longer has, and swap each model folder in. Returns the
    installed models, leaves first."""
    if validate is not None:
        validate(staging)
    names = options.model_names()
    order = [names[role] for role in roles]
    keep_previous(repo, staging, order, version)
    install(staging, repo, order, to_retire(repo, options, tuple(r for r in names if r not in roles)))
    return order
