"""Peak memory of a piece of code, on any device: the bytes of the tensors it allocates that
are alive at once.

A CPU has no allocator statistics (``torch.cuda.max_memory_allocated`` has no CPU twin) and
the process's resident size moves with the C allocator's caching, so :class:`TensorMemory`
counts tensors instead: a ``TorchDispatchMode`` sees every operator's outputs, forward and
backward, and each new storage counts from its creation until it is freed. The figure is
exact and the same on every run; it leaves out what kernels allocate inside themselves and
free before returning (a fused attention kernel's tiles).
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

__all__ = ["TensorMemory"]


class TensorMemory(TorchDispatchMode):
    """``with TensorMemory() as mem: ...``; then ``mem.peak``: the most bytes of tensors
    created inside the block that were alive at once, and ``mem.live``: those still alive."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: WeakIdKeyDictionary = WeakIdKeyDictionary()

    def _freed(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                if storage not in self._seen:  # views and in-place results share a storage
                    self._seen[storage] = True
                    self.live += storage.nbytes()
                    weakref.finalize(storage, self._freed, storage.nbytes())
        self.peak = max(self.peak, self.live)
        return out
