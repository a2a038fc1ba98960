"""System shared-memory slots through which a client moves large batches instead of the gRPC message."""

from __future__ import annotations

import itertools
import os
import threading

import numpy as np
import numpy.typing as npt
import tritonclient.grpc as grpcclient
from tritonclient.utils import np_to_triton_dtype, triton_to_np_dtype

from sae.clients.model_info import ModelInfo, TensorSpec


class ShmSlot:
    """A pair of system shared-memory regions (input, output) sized for one full batch of one model."""

    _ids = itertools.count()

    def __init__(self, model: str, input_bytes: int, output_bytes: int):
        import tritonclient.utils.shared_memory as shm

        self._shm = shm
        tag = f"sae_{os.getpid()}_{id(self):x}_{next(self._ids)}"
        self.input_name, self.output_name = f"{tag}_in", f"{tag}_out"
        self.input_bytes, self.output_bytes = input_bytes, output_bytes
        self.input = shm.create_shared_memory_region(
            self.input_name, f"/{self.input_name}", input_bytes, create_only=True
        )
        try:
            self.output = shm.create_shared_memory_region(
                self.output_name, f"/{self.output_name}", output_bytes, create_only=True
            )
        except Exception:
            shm.destroy_shared_memory_region(self.input)
            raise
        self.model = model

    def registrations(self) -> list[tuple[str, str, int]]:
        """(name, key, byte size) for ``register_system_shared_memory``."""
        return [
            (self.input_name, f"/{self.input_name}", self.input_bytes),
            (self.output_name, f"/{self.output_name}", self.output_bytes),
        ]

    def inputs(self, input_name: str, array: npt.NDArray[np.generic]) -> list[grpcclient.InferInput]:
        self._shm.set_shared_memory_region(self.input, [np.ascontiguousarray(array)])
        tensor = grpcclient.InferInput(input_name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_shared_memory(self.input_name, array.nbytes)
        return [tensor]

    def outputs(self, output_name: str) -> list[grpcclient.InferRequestedOutput]:
        output = grpcclient.InferRequestedOutput(output_name)
        output.set_shared_memory(self.output_name, self.output_bytes)
        return [output]

    def read(self, result: grpcclient.InferResult, output_name: str) -> npt.NDArray[np.generic]:
        meta = result.get_output(output_name)
        view = self._shm.get_contents_as_numpy(self.output, triton_to_np_dtype(meta.datatype), list(meta.shape))
        array: npt.NDArray[np.generic] = view.copy()
        del view  # the mapping cannot be closed while a view of it exists
        return array

    def destroy(self) -> None:
        for region in (self.input, self.output):
            try:
                self._shm.destroy_shared_memory_region(region)
            except Exception:  # already gone
                pass


class ShmPool:
    """Slots per model, handed out to one request at a time (thread-safe; slots are reused, never shrunk)."""

    def __init__(self) -> None:
        self._free: dict[str, list[ShmSlot]] = {}
        self._all: list[ShmSlot] = []
        self._lock = threading.Lock()

    def take(self, model: str) -> ShmSlot | None:
        with self._lock:
            free = self._free.get(model)
            return free.pop() if free else None

    def add(self, slot: ShmSlot) -> None:
        with self._lock:
            self._all.append(slot)

    def give_back(self, slot: ShmSlot) -> None:
        with self._lock:
            self._free.setdefault(slot.model, []).append(slot)

    def drain(self) -> list[ShmSlot]:
        with self._lock:
            slots, self._all, self._free = self._all, [], {}
        return slots


def slot_sizes(info: ModelInfo, input_name: str, output_name: str) -> tuple[int, int]:
    """Bytes of one full batch of ``input_name`` and ``output_name``."""

    def nbytes(spec: TensorSpec) -> int:
        return info.max_batch_size * int(np.prod(spec.dims)) * np.dtype(triton_to_np_dtype(spec.datatype)).itemsize

    return nbytes(info.inputs[input_name]), nbytes(info.outputs[output_name])
