"""Offload between phases (report §10): the tensors that the next phase does not use leave the
accelerator for CPU memory or disk, and come back bit-exact before they are used again.

An offloaded tensor keeps its identity: the same ``Parameter``, the same ``p.grad``, the same
optimizer-state tensor, so the optimizer, the rollout engine and whatever else holds it need
no telling. Only its data moves. ``t.data`` becomes an empty tensor of its dtype on its
device (a storage of 0 bytes: the memory is free), and on restore a new tensor of the
original shape, dtype and device receives the saved bytes. Copies between devices and a
safetensors round trip copy bytes, so a restored run continues exactly as if nothing had
moved. While away a tensor has shape ``[0]``: a use by mistake fails loudly instead of
reading garbage.

Where the tensors go (``infra.offload_to``):

* ``cpu`` — host memory, pinned when the tensor is on CUDA (page-locked memory copies at full
  bus bandwidth). A tensor already in host memory has nothing to free and stays where it
  is, so on a CPU device this is a no-op.
* ``disk`` — one safetensors file per holder, written under a temporary name and renamed
  into place, read back and deleted on restore. It frees host memory too (a CPU run's
  tensors as well). No fsync: the files live for one phase, and a crash loses the process's
  memory with them anyway; a run resumes from its checkpoints.

On CUDA, once tensors have left, ``torch.cuda.empty_cache()`` hands the freed blocks of
PyTorch's caching allocator back to the driver. Without it they stay reserved by this
process: reusable by its own next allocations, but not by another process on the same GPU
(a vLLM engine) and still counted by ``nvidia-smi``. Host memory has the same trap: glibc
keeps most freed tensors of a small model in its heap, so after a disk offload
``malloc_trim`` returns the free pages to the system (bench/memory_model.py measures it).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from r1lab.errors import UserError

if TYPE_CHECKING:
    from r1lab.infra.config import InfraConfig

__all__ = [
    "TARGETS",
    "Offloaded",
    "Offloader",
    "module_tensors",
    "offload",
    "optimizer_tensors",
    "restore",
    "reward_model_tensors",
    "training_state",
]

TARGETS = ("cpu", "disk")


# --- what a module holds ------------------------------------------------------------------


def module_tensors(module: torch.nn.Module) -> dict[str, Tensor]:
    """A module's parameters, their gradients and its buffers, as ``param/<name>``,
    ``grad/<name>`` and ``buffer/<name>`` (a tied parameter once)."""
    out: dict[str, Tensor] = {}
    for name, p in module.named_parameters():
        out[f"param/{name}"] = p
        if p.grad is not None:
            out[f"grad/{name}"] = p.grad
    for name, b in module.named_buffers():
        out[f"buffer/{name}"] = b
    return out


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    """Every tensor of an optimizer's per-parameter state (AdamW: ``step``, ``exp_avg``,
    ``exp_avg_sq``) as ``state/<i>/<key>``, the parameters numbered over the groups in order,
    as ``optimizer.state_dict()`` numbers them. Empty before the first step."""
    out: dict[str, Tensor] = {}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for i, p in enumerate(params):
        for key, value in optimizer.state.get(p, {}).items():
            if isinstance(value, Tensor):
                out[f"state/{i}/{key}"] = value
    return out


def training_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    """What the training module holds idle outside its phase: the gradients of ``model``
    and the optimizer state. The weights stay: the rollout samples with them."""
    grads = {f"grad/{n}": p.grad for n, p in model.named_parameters() if p.grad is not None}
    return {**grads, **optimizer_tensors(optimizer)}


def reward_model_tensors(models: Any) -> dict[str, Tensor]:
    """The tensors of every model of a :class:`~r1lab.inference.reward_model.RewardModels`,
    as ``<name>/<key>``."""
    return {
        f"{name}/{key}": t
        for name, rm in models.models.items()
        for key, t in module_tensors(rm.model).items()
    }


# --- away and back ------------------------------------------------------------------------


@dataclass
class _Entry:
    tensor: Tensor  # the tensor itself, its data replaced while away
    shape: torch.Size
    dtype: torch.dtype
    device: torch.device
    copy: Tensor | None = None  # the host copy (cpu); None when it is in the file (disk)


@dataclass
class Offloaded:
    """Tensors sent away by :func:`offload`, for :func:`restore` to bring back."""

    entries: dict[str, _Entry] = field(default_factory=dict)
    path: Path | None = None  # the file (disk); None for cpu, or when nothing moved

    @property
    def nbytes(self) -> int:
        """The bytes freed where the tensors were."""
        return sum(e.shape.numel() * e.dtype.itemsize for e in self.entries.values())


def offload(
    tensors: dict[str, Tensor], to: str = "cpu", path: str | Path | None = None
) -> Offloaded:
    """Send ``tensors`` away (``cpu``: to host memory; ``disk``: to the safetensors file
    ``path``) and free their memory; :func:`restore` brings them back.

    With ``cpu`` a tensor already in host memory stays. Empty tensors (nothing to free, or
    already away) and a second name for the same tensor are skipped.
    """
    if to not in TARGETS:
        raise UserError(f"offload: unknown target '{to}' (known: {', '.join(TARGETS)})")
    if to == "disk" and path is None:
        raise ValueError("offload to disk needs a path")
    entries: dict[str, _Entry] = {}
    seen: set[int] = set()
    for key, t in tensors.items():
        if id(t) in seen or t.numel() == 0 or (to == "cpu" and t.device.type == "cpu"):
            continue
        seen.add(id(t))
        entries[key] = _Entry(t, t.shape, t.dtype, t.device)
    if not entries:
        return Offloaded()
    out = Offloaded(entries)
    if to == "cpu":
        for e in entries.values():
            e.copy = torch.empty(e.shape, dtype=e.dtype, pin_memory=e.device.type == "cuda")
            e.copy.copy_(e.tensor.detach(), non_blocking=True)
        _synchronize(entries)
    else:
        out.path = Path(path)  # type: ignore[arg-type]
        host = {k: e.tensor.detach().cpu().contiguous() for k, e in entries.items()}
        _save_atomic(host, out.path)
        del host
    for e in entries.values():
        e.tensor.data = torch.empty(0, dtype=e.dtype, device=e.device)
    _empty_cache(entries)
    return out


def restore(away: Offloaded) -> None:
    """Bring back what :func:`offload` sent away: every tensor its shape, dtype, device and
    bytes again (a disk file is read and deleted). A second call does nothing."""
    if away.path is not None:
        from safetensors import safe_open

        # into fresh tensors: the file's are views of its mapping, not resizable, and gone
        # with the file
        with safe_open(str(away.path), framework="pt") as f:
            for key, e in away.entries.items():
                e.tensor.data = _like(e).copy_(f.get_tensor(key))
        away.path.unlink()
        away.path = None
    else:
        for e in away.entries.values():
            assert e.copy is not None
            e.tensor.data = _like(e).copy_(e.copy, non_blocking=True)
        _synchronize(away.entries)
    away.entries = {}


def _like(e: _Entry) -> Tensor:
    return torch.empty(e.shape, dtype=e.dtype, device=e.device)


def _save_atomic(tensors: dict[str, Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(tmp))
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise UserError(f"cannot offload to {tmp}: {e.strerror or e}") from None
        raise
    os.replace(tmp, path)


def _synchronize(entries: dict[str, _Entry]) -> None:
    # non-blocking copies to and from pinned memory are complete only after this
    for device in {e.device for e in entries.values() if e.device.type == "cuda"}:
        torch.cuda.synchronize(device)


def _empty_cache(entries: dict[str, _Entry]) -> None:
    if any(e.device.type == "cuda" for e in entries.values()):
        torch.cuda.empty_cache()
    if any(e.device.type == "cpu" for e in entries.values()):
        _trim_host_heap()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc
        return None


def _trim_host_heap() -> None:
    # glibc keeps freed blocks under its mmap threshold (which grows up to 32 MiB: most
    # tensors of a small model) in its heap for reuse instead of returning them; malloc_trim
    # hands the free pages back, so that they are free for other processes too, as
    # torch.cuda.empty_cache() does for the GPU
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


# --- the phases of a run ------------------------------------------------------------------


class Offloader:
    """The holders of a run's tensors that some phase does not use, by name, and which of
    them are away.

    A holder is a function that finds its tensors when they leave (an optimizer's state
    appears at its first step). :meth:`use` starts a phase: the holders it does not name
    leave first, then the ones it names come back, so that the two never need the memory at
    once. With ``infra.offload`` off nothing moves.
    """

    def __init__(self, cfg: InfraConfig, folder: str | Path):
        """``folder``: where disk files go when ``cfg.offload_dir`` is empty (the run's)."""
        self.cfg = cfg
        self.folder = Path(cfg.offload_dir) if cfg.offload_dir else Path(folder)
        self.holders: dict[str, Callable[[], dict[str, Tensor]]] = {}
        self.away: dict[str, Offloaded] = {}

    def add(self, name: str, tensors: Callable[[], dict[str, Tensor]]) -> None:
        self.holders[name] = tensors

    def use(self, *names: str) -> None:
        """Start a phase that uses the holders ``names``: the others leave, these come back."""
        unknown = [n for n in names if n not in self.holders]
        if unknown:
            raise ValueError(f"Offloader.use: no holder {unknown} (have {list(self.holders)})")
        if not self.cfg.offload:
            return
        for name, tensors in self.holders.items():
            if name not in names and name not in self.away:
                # the pid keeps two runs sharing an offload_dir apart
                path = self.folder / f"{name.replace(' ', '-')}-{os.getpid()}.safetensors"
                self.away[name] = offload(tensors(), self.cfg.offload_to, path)
        for name in names:
            if name in self.away:
                restore(self.away.pop(name))

    def restore_all(self) -> None:
        """Bring every holder back (the end of a run) and remove the run's offload folder
        when it is empty."""
        while self.away:
            restore(self.away.pop(next(iter(self.away))))
        if not self.cfg.offload_dir:
            with contextlib.suppress(OSError):
                self.folder.rmdir()
