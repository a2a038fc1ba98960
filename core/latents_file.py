"""The HDF5 file of latents that ``sae encode`` writes (and the Ray engine's shards and their merge): its layout,
the identity that ties it to its input and model, and the raw writes that change it after creation.

Layout::

    latents    float32 [N, D]   row i = encode(image i)
    labels     float64 [N, K]   copied from the dataset (when it has labels), attrs: factor_names
               (or ``factors`` int64 [N, K] for a dataset whose factors follow from the row index, like MPI3D)
    committed  int64 scalar     images 0..committed-1 are final: the progress marker
    attrs      format, model, source_path, source_images, source_fingerprint, image_shape, probe_latent

The file is created complete (every dataset at full size, storage allocated up front, attributes written); after
that only raw bytes of the preallocated contiguous datasets are overwritten, never HDF5 metadata, so a writer killed
at any moment leaves a readable file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import h5py
import numpy as np
import numpy.typing as npt

from sae.core.atomic import atomic_write
from sae.core.datasets.base import ImageSource
from sae.core.errors import EncodeInputError

FORMAT = "sae-latents/1"
FINGERPRINT_IMAGES = 64  # images hashed at each end of the dataset, and spread between
LABEL_WINDOW = 65536  # labels copied this many rows at a time


def fingerprint(data: ImageSource) -> str:
    """SHA-1 of the dataset's size, its first and last images and images spread evenly between: tells one input
    from another, cheaply."""
    n = len(data)
    digest = hashlib.sha1(f"{n}:{list(data.shape[1:])}".encode())
    digest.update(np.ascontiguousarray(data.read(slice(0, min(FINGERPRINT_IMAGES, n)))).tobytes())
    for row in np.unique(np.linspace(0, n - 1, FINGERPRINT_IMAGES).astype(np.int64)):
        digest.update(np.ascontiguousarray(data.read(slice(int(row), int(row) + 1))).tobytes())
    digest.update(np.ascontiguousarray(data.read(slice(max(0, n - FINGERPRINT_IMAGES), n))).tobytes())
    return digest.hexdigest()


class LatentsIdentity(TypedDict):
    """What ties a latents file to its input and model (the attributes :func:`identity_of` gives)."""

    format: str
    model: str
    source_images: int
    source_fingerprint: str
    image_shape: list[int]


def identity_of(model: str, data: ImageSource, source_fingerprint: str) -> LatentsIdentity:
    """What a latents file records to tell its input and model from others (checked on resume and merge)."""
    return {
        "format": FORMAT,
        "model": model,
        "source_images": len(data),
        "source_fingerprint": source_fingerprint,
        "image_shape": list(data.shape[1:]),
    }


def check_identity(path: Path, found: Mapping[str, object], wanted: Mapping[str, object]) -> None:
    """Refuse an output (its HDF5 attributes or manifest: ``found``) that belongs to another input or model, naming
    what differs."""
    differs = []
    for key, value in wanted.items():
        have = found.get(key)
        have = have.tolist() if isinstance(have, np.ndarray) else have
        have = have.decode() if isinstance(have, bytes) else have
        if have != value:
            differs.append(f"{key}: file has {have!r}, this run {value!r}")
    if differs:
        source = found.get("source_path", "?")
        raise EncodeInputError(
            f"{path} belongs to another encoding (of {source}, model {found.get('model', '?')!r}): "
            + "; ".join(differs)
            + ". Remove it or choose another --out; nothing was changed."
        )


@dataclass(frozen=True)
class LabelColumn:
    """What is copied beside the latents: ``labels`` (the stored label values) or, for a dataset whose factors follow
    from the row index (MPI3D), ``factors``; ``read`` takes a slice of rows."""

    key: str
    read: Callable[[slice], npt.NDArray[np.number[Any]]]
    factor_names: tuple[str, ...] = ()


def label_column(data: ImageSource) -> LabelColumn | None:
    """The dataset's labels (or row-index factors) to store beside its latents; None for a dataset with neither."""
    if data.has_labels:
        return LabelColumn("labels", data.read_labels, tuple(data.factor_names))
    if data.factor_sizes:
        return LabelColumn("factors", data.read_factors, tuple(data.factor_names))
    return None


def latents_attrs(identity: Mapping[str, object], source_path: Path, probe_latent: npt.ArrayLike) -> dict[str, object]:
    """The attributes of a latents file, in the order they are written."""
    return {
        **identity,
        "source_path": str(Path(source_path).resolve()),
        "probe_latent": np.asarray(probe_latent, np.float32),
    }


def write_latents_layout(
    path: Path, attrs: Mapping[str, object], rows: int, dim: int, labels: LabelColumn | None, first_row: int = 0
) -> None:
    """An HDF5 file of ``rows`` latents in the layout of the module docstring, written at ``path``: the attributes,
    ``latents`` (NaN) and ``committed`` (0) allocated at full size, and the labels of dataset rows
    ``first_row .. first_row + rows - 1`` copied in.

    The one home of the layout: ``sae encode`` writes its output with it, the Ray engine its shards and their merge."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)  # storage allocated now: later writes touch no metadata
    with h5py.File(path, "w", libver="earliest") as f:  # superblock v0: no "open for writing" flag to trip on
        for key, value in attrs.items():
            f.attrs[key] = value
        f.create_dataset("latents", (rows, dim), np.float32, fillvalue=np.nan, dcpl=dcpl)
        f.create_dataset("committed", (), np.int64, data=0)
        if labels is not None:
            first = np.asarray(labels.read(slice(first_row, first_row + 1)))
            column = f.create_dataset(labels.key, (rows, *first.shape[1:]), first.dtype, dcpl=dcpl)
            for start in range(0, rows, LABEL_WINDOW):
                stop = min(rows, start + LABEL_WINDOW)
                column[start:stop] = labels.read(slice(first_row + start, first_row + stop))
            if labels.factor_names:
                column.attrs["factor_names"] = list(labels.factor_names)


def create_latents_file(
    path: Path, attrs: Mapping[str, object], rows: int, dim: int, labels: LabelColumn | None
) -> None:
    """:func:`write_latents_layout` under a temporary name, then renamed to ``path``: creation is atomic."""
    with atomic_write(path) as tmp:
        write_latents_layout(tmp, attrs, rows, dim, labels)


@dataclass(frozen=True)
class _RawDataset:
    """A contiguous, preallocated HDF5 dataset written as raw bytes at its offset in the file."""

    fd: int
    offset: int
    dtype: np.dtype[Any]
    row_bytes: int

    def write(self, row: int, values: npt.ArrayLike) -> None:
        data = np.ascontiguousarray(values, self.dtype).tobytes()
        position, view = self.offset + row * self.row_bytes, memoryview(data)
        while view:
            written = os.pwrite(self.fd, view, position)
            view, position = view[written:], position + written


class RawDatasets:
    """``latents`` and ``committed`` of an output file, written with ``pwrite`` instead of through HDF5.

    Only raw bytes of datasets allocated at creation change (the module docstring), so HDF5 metadata is never
    written after creation; and a failed write (a full disk) leaves no HDF5 library state half-flushed, which made
    h5py fail on close and the interpreter crash at exit."""

    def __init__(self, path: Path):
        self.path = path
        with h5py.File(path, "r") as f:
            layout = {key: (f[key].id.get_offset(), f[key].dtype, f[key].shape) for key in ("latents", "committed")}
            self.committed_value = int(f["committed"][()])
        if any(offset is None for offset, _, _ in layout.values()):
            raise EncodeInputError(f"{path} has no preallocated latents/committed datasets; remove it and run again")
        self.fd = os.open(path, os.O_WRONLY)
        (l_off, l_dtype, l_shape), (c_off, c_dtype, _) = layout["latents"], layout["committed"]
        self.latents = _RawDataset(self.fd, l_off, l_dtype, l_dtype.itemsize * int(np.prod(l_shape[1:])))
        self.committed = _RawDataset(self.fd, c_off, c_dtype, c_dtype.itemsize)

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def __enter__(self) -> RawDatasets:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)
