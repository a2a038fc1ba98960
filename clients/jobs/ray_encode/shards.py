"""The shard plan, shard files, the manifest and the merge of ``sae encode --engine ray`` (no Ray needed).

Output folder ``DIR``::

    manifest.json              what this encoding is (the latents file's identity, probe latent, batch and shard
                               sizes, label column) and, after each run, the row ranges that failed
    shards/rows-S-E.h5         images S..E-1: the layout of ``sae encode``'s latents file
                               (:func:`sae.core.latents_file.write_latents_layout`) over those rows, with the labels of
                               those rows beside the latents, ``committed`` = E - S and attrs ``rows_start`` = S,
                               ``rows_stop`` = E

The plan is fixed by the dataset's size and ``shard_rows``: shard k holds rows k·shard_rows … Each shard file is
written whole under a temporary name and renamed (:func:`sae.core.atomic.atomic_write`), so a shard file that exists
is complete, and a rerun encodes exactly the shards whose files are missing. :func:`merge_shards` writes the single
file with the code of the single-process job (its layout, then the latents as raw bytes, then ``committed``), so
the merged file equals that job's output byte for byte when the latents do.
"""

from __future__ import annotations

import bisect
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import h5py
import numpy as np
import numpy.typing as npt

from sae.core.atomic import atomic_write, write_text_atomic
from sae.core.errors import EncodeJobError
from sae.core.latents_file import (
    LabelColumn,
    LatentsIdentity,
    RawDatasets,
    check_identity,
    create_latents_file,
    latents_attrs,
    write_latents_layout,
)

MANIFEST_FORMAT = "sae-latent-shards/1"
MANIFEST_NAME = "manifest.json"
SHARDS_FOLDER = "shards"
_SHARD_NAME = re.compile(r"rows-(\d{12})-(\d{12})\.h5")


@dataclass(frozen=True, order=True)
class Shard:
    """Rows ``start .. stop - 1`` of the dataset: one Ray block and one shard file."""

    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start

    @property
    def file_name(self) -> str:
        return f"rows-{self.start:012d}-{self.stop:012d}.h5"

    def describe(self) -> str:
        return f"images {self.start:,}..{self.stop - 1:,}"


def plan_shards(images: int, shard_rows: int) -> list[Shard]:
    """The row ranges of an encoding: consecutive, ``shard_rows`` each, the last one partial."""
    return [Shard(start, min(images, start + shard_rows)) for start in range(0, images, shard_rows)]


class FailedShard(TypedDict):
    """A shard that a run could not encode: its row range and why."""

    start: int
    stop: int
    error: str


@dataclass
class Manifest:
    """What the driver keeps: no images, no latents."""

    identity: LatentsIdentity  # sae.core.latents_file.identity_of: format, model, source size, fingerprint, image shape
    source_path: str
    probe_latent: list[float]
    batch_size: int
    shard_rows: int
    label_key: str | None  # "labels", "factors" or None (as in the single file)
    factor_names: list[str] = field(default_factory=list)
    failed: list[FailedShard] = field(default_factory=list)  # of the last run
    format: str = MANIFEST_FORMAT

    @property
    def images(self) -> int:
        return int(self.identity["source_images"])

    @property
    def latent_dim(self) -> int:
        return len(self.probe_latent)

    def shards(self) -> list[Shard]:
        return plan_shards(self.images, self.shard_rows)

    def attrs(self) -> dict[str, object]:
        """The attributes of the single latents file (and, with their row range, of every shard)."""
        return latents_attrs(self.identity, Path(self.source_path), np.asarray(self.probe_latent, np.float32))

    def settings(self) -> dict[str, object]:
        """What a rerun must share with the run that wrote the manifest."""
        return {**self.identity, "batch_size": self.batch_size, "shard_rows": self.shard_rows}


def manifest_path(folder: Path) -> Path:
    return Path(folder) / MANIFEST_NAME


def read_manifest(folder: Path) -> Manifest | None:
    """The folder's manifest, or None when it has none."""
    path = manifest_path(folder)
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format {raw.get('format')!r}, expected {MANIFEST_FORMAT!r}")
        return Manifest(**raw)
    except (ValueError, TypeError) as e:
        raise EncodeJobError(
            f"{path} is not a manifest of latent shards ({e}); remove {folder} or choose another --out"
        ) from e


def write_manifest(folder: Path, manifest: Manifest) -> None:
    write_text_atomic(manifest_path(folder), json.dumps(asdict(manifest), indent=1) + "\n")


def check_manifest(folder: Path, found: Manifest, wanted: Manifest) -> None:
    """Refuse a folder written for another input, model, batch size or shard size, naming what differs."""
    check_identity(manifest_path(folder), {**found.settings(), "source_path": found.source_path}, wanted.settings())


def shard_path(folder: Path, shard: Shard) -> Path:
    return Path(folder) / SHARDS_FOLDER / shard.file_name


def complete_shards(folder: Path) -> set[Shard]:
    """The shards whose files exist (each is written whole, then renamed into place): a directory listing, no file
    is opened."""
    shards = Path(folder) / SHARDS_FOLDER
    if not shards.is_dir():
        return set()
    found = set()
    with os.scandir(shards) as entries:
        for entry in entries:
            match = _SHARD_NAME.fullmatch(entry.name)
            if match:
                found.add(Shard(int(match[1]), int(match[2])))
    return found


def missing_shards(folder: Path, manifest: Manifest) -> list[Shard]:
    done = complete_shards(folder)
    return [shard for shard in manifest.shards() if shard not in done]


def describe_ranges(shards: list[Shard], limit: int = 8) -> str:
    text = ", ".join(s.describe() for s in shards[:limit])
    return text + (f" and {len(shards) - limit} more" if len(shards) > limit else "")


def write_shard(
    folder: Path, manifest: Manifest, shard: Shard, latents: npt.NDArray[np.float32], labels: LabelColumn | None
) -> Path:
    """One complete shard file, atomically: the layout over ``shard``'s rows, its latents, ``committed`` = its rows."""
    if latents.shape != (shard.rows, manifest.latent_dim):
        raise EncodeJobError(
            f"{shard.describe()}: got latents of shape {list(latents.shape)}, expected "
            f"{[shard.rows, manifest.latent_dim]}"
        )
    path = shard_path(folder, shard)
    attrs = {**manifest.attrs(), "rows_start": shard.start, "rows_stop": shard.stop}
    with atomic_write(path) as tmp:
        write_latents_layout(tmp, attrs, shard.rows, manifest.latent_dim, labels, first_row=shard.start)
        with h5py.File(tmp, "r+") as f:
            f["latents"][...] = latents
            f["committed"][()] = shard.rows
    return path


class _ShardColumn:
    """A label column read across shard files, for the merge (a slice may span several shards)."""

    def __init__(self, folder: Path, shards: list[Shard], key: str) -> None:
        self.folder, self.shards, self.key = folder, shards, key
        self.starts = [s.start for s in shards]

    def __call__(self, rows: slice) -> npt.NDArray[np.number[Any]]:
        parts: list[npt.NDArray[np.number[Any]]] = []
        first = bisect.bisect_right(self.starts, rows.start) - 1
        for shard in self.shards[first:]:
            if shard.start >= rows.stop:
                break
            lo, hi = max(rows.start, shard.start), min(rows.stop, shard.stop)
            with h5py.File(shard_path(self.folder, shard), "r") as f:
                parts.append(f[self.key][lo - shard.start : hi - shard.start])
        return np.concatenate(parts)


@dataclass
class MergeReport:
    out: Path
    images: int
    shards: int
    merged: bool  # False: ``out`` already held this encoding

    def summary(self) -> str:
        if not self.merged:
            return f"{self.out} already holds all {self.images:,} latents; nothing to do"
        return f"merged {self.shards:,} shards ({self.images:,} latents) into {self.out}"


def merge_shards(folder: Path, out: Path) -> MergeReport:
    """The single latents file of ``sae encode`` from a complete folder of shards."""
    folder, out = Path(folder), Path(out)
    manifest = read_manifest(folder)
    if manifest is None:
        raise EncodeJobError(f"{folder} has no {MANIFEST_NAME}: not an output of `sae encode --engine ray`")
    shards = manifest.shards()
    missing = missing_shards(folder, manifest)
    if missing:
        raise EncodeJobError(
            f"{folder}: {len(missing)} of {len(shards)} shards are missing ({describe_ranges(missing)});"
            " run `sae encode --engine ray` with the same --out again to encode them"
        )
    identity = manifest.identity
    if out.exists():
        with h5py.File(out, "r") as f:
            check_identity(out, f.attrs, identity)
        return MergeReport(out, manifest.images, len(shards), merged=False)
    for shard in shards:  # every shard belongs to this encoding and is whole, before anything is written
        path = shard_path(folder, shard)
        with h5py.File(path, "r") as f:
            check_identity(path, f.attrs, {**identity, "rows_start": shard.start, "rows_stop": shard.stop})
            if int(f["committed"][()]) != shard.rows:
                raise EncodeJobError(
                    f"{path} is not complete (committed {int(f['committed'][()])} of "
                    f"{shard.rows}); remove it and run `sae encode --engine ray` again"
                )
    partial = out.with_name(out.name + ".partial")
    partial.with_name(partial.name + ".tmp").unlink(missing_ok=True)
    partial.unlink(missing_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    labels = (
        LabelColumn(manifest.label_key, _ShardColumn(folder, shards, manifest.label_key), tuple(manifest.factor_names))
        if manifest.label_key
        else None
    )
    create_latents_file(partial, manifest.attrs(), manifest.images, manifest.latent_dim, labels)
    with RawDatasets(partial) as f:
        for shard in shards:
            with h5py.File(shard_path(folder, shard), "r") as s:
                f.latents.write(shard.start, s["latents"][()])
        f.sync()  # the latents first ...
        f.committed.write(0, np.array(manifest.images))
        f.sync()  # ... then the marker that says they are final
    os.replace(partial, out)
    return MergeReport(out, manifest.images, len(shards), merged=True)
