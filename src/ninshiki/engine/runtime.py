"""Where and how a run executes: device, mixed precision, memory format, and data-parallel ranks."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None    # autocast dtype, None = full precision
    channels_last: bool
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes files and prints progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA where the GPU has it. On the CPU it is slower than fp32 for these nets, so off."""
    if amp == "off":
        return None
    supported = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if amp == "bf16":
        if device.type == "cuda" and not supported:
            raise RuntimeError("--amp bf16: this GPU does not support bfloat16")
        return torch.bfloat16
    return torch.bfloat16 if supported else None


def init_distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """Join the process group that `torchrun` describes in the environment, if any.

    Returns (rank, world_size, device); under torchrun on GPUs each rank takes cuda:LOCAL_RANK.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def make_runtime(*, device: str, amp: str = "auto", channels_last: str = "auto") -> Runtime:
    resolved = resolve_device(device)
    rank, world_size, resolved = init_distributed(resolved)
    use_channels_last = channels_last == "on" or (channels_last == "auto" and resolved.type == "cuda")
    return Runtime(resolved, resolve_amp(amp, resolved), use_channels_last, rank, world_size)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks in place (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
