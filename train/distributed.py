"""Where a training runs: the device, mixed precision, and data parallelism across processes (torchrun).

One ``Context`` per process. Without torchrun it is a single process on ``--device``. Under
``torchrun --nproc_per_node N -m train ...`` (which sets RANK, WORLD_SIZE, LOCAL_RANK), each process joins a
process group (NCCL on GPUs, gloo on CPU), takes GPU ``LOCAL_RANK`` when on CUDA, and trains a
DistributedDataParallel copy of the networks on its shard of every global batch:

- the global batch of step s is a function of (seed, s) alone: item i of it is drawn from
  ``default_rng([seed, s, i])``, so N processes together see exactly the batch one process sees, and a run is
  reproducible whatever the world size;
- BatchNorm statistics are synchronised across processes (``torch.nn.SyncBatchNorm`` on GPUs; on CPU, where
  PyTorch's SyncBatchNorm refuses to run, ``GlooSyncBatchNorm`` below), so the distributed step equals the
  single-process step on the same global batch;
- DDP averages gradients; a loss summed over the batch (DPED's texture loss) is scaled by ``world_size`` first
  (``global_sum``), so it stays the global batch's sum;
- logged losses are averaged across processes, so every process sees the same values (and the divergence
  guard stops all of them at the same step);
- only rank 0 writes the run folder, checkpoints, TensorBoard and the progress bar.

Mixed precision (``--amp``): autocast around the networks' forward passes (bfloat16 where the device has it,
else float16 with a gradient scaler); losses are computed in float32 (SSIM's variances do not survive bfloat16).
On a CPU without native bfloat16 (oneDNN reports none: no AVX512-BF16 or AMX) ``--amp`` trains in float32 and
says so: there autocast emulates bfloat16. On an AVX2 machine a DPED+ step (16 x 96 px patches, branch and
local network trained) took about 60 s with it and 5.5 s in float32, both beside another job.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch import nn

DEVICES = ("auto", "cpu", "cuda", "mps")
T = TypeVar("T")


def device_field() -> Any:
    """The ``--device`` option of every training config."""
    return field(default="auto", metadata={"help": "where to train: auto (CUDA if present, else CPU), cpu, cuda "
                                                   "or mps; under torchrun each process takes GPU LOCAL_RANK"})


def amp_field() -> Any:
    """The ``--amp`` option of every training config."""
    return field(default=False, metadata={"help": "mixed precision: autocast the networks in bfloat16 (float16 "
                                                  "with a gradient scaler where bfloat16 is missing)"})


def check_device(name: str) -> None:
    """Raise ValueError (one line, naming the option) when ``--device name`` cannot run on this machine."""
    if name not in DEVICES:
        raise ValueError(f"--device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise ValueError(f"--device cuda: no CUDA device is available here (PyTorch {torch.__version__}, {build}); "
                         f"use --device cpu, or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps: Apple's Metal backend is not available here; use --device cpu, or auto")


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` is CUDA when present, else the CPU (MPS only when asked: some training ops still fall back)."""
    check_device(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN's answer: AVX512-BF16 or AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The autocast dtype for ``--amp`` on ``device``: bfloat16 where supported, else float16; None without it, and
    None on a CPU without native bfloat16."""
    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16 if cpu_has_bf16() else None


@dataclass(frozen=True)
class Context:
    """This process's place in a training run."""

    device: torch.device
    dtype: torch.dtype | None = None  # autocast dtype; None: float32
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def precision(self) -> str:
        return {None: "float32", torch.bfloat16: "bfloat16 autocast",
                torch.float16: "float16 autocast + gradient scaler"}[self.dtype]

    def record(self) -> dict:
        """What config.json and every checkpoint's meta record about where the run ran."""
        return {"device": str(self.device), "precision": self.precision, "world_size": self.world_size,
                "backend": dist.get_backend() if self.distributed else None}

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, enabled only for float16 (bfloat16 has float32's range)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)

    def shard(self, batch: int) -> range:
        """The items of a global batch of ``batch`` that this process draws and trains on."""
        if batch % self.world_size:
            raise ValueError(f"--batch {batch} does not split evenly across {self.world_size} processes: "
                             f"use a multiple of {self.world_size}")
        per = batch // self.world_size
        return range(self.rank * per, (self.rank + 1) * per)

    def prepare(self, module: nn.Module) -> nn.Module:
        """``module`` on this device, its BatchNorms synchronised across processes (in place)."""
        module.to(self.device)
        if self.distributed:
            sync_batchnorm(module, self.device)
        return module

    def wrap(self, module: nn.Module) -> nn.Module:
        """The module to call in training steps: DistributedDataParallel across processes, else itself."""
        if not self.distributed:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids, forward_sync_buffers=False)

    def global_sum(self, loss: torch.Tensor) -> torch.Tensor:
        """A loss summed over this process's shard, scaled so that DDP's gradient average is the global sum's."""
        return loss * self.world_size

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Logged scalars averaged over the processes (the same dict on every one)."""
        if not self.distributed:
            return values
        t = torch.tensor(list(values.values()), dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t)
        return dict(zip(values, (t / self.world_size).tolist()))

    def from_main(self, fn: Callable[[], T]) -> T:
        """``fn()`` run on rank 0 only, its result (or the exception it raised) given to every process."""
        if not self.distributed:
            return fn()
        box: list[Any] = [None]
        if self.main:
            try:
                box[0] = ("ok", fn())
            except Exception as err:  # every process raises it, so all stop with the same message
                box[0] = ("error", err)
        dist.broadcast_object_list(box, src=0, device=self._comm_device)
        kind, value = box[0]
        if kind == "error":
            raise value
        return value

    @property
    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")


def torchrun_env() -> tuple[int, int, int, int]:
    """(rank, world size, local rank, local world size) as torchrun sets them; (0, 1, 0, 1) outside torchrun."""
    get = lambda key, default: int(os.environ.get(key, default))  # noqa: E731
    return get("RANK", 0), get("WORLD_SIZE", 1), get("LOCAL_RANK", 0), get("LOCAL_WORLD_SIZE", 1)


@contextlib.contextmanager
def started(device: str = "auto", amp: bool = False, threads: int | None = None) -> Iterator[Context]:
    """The process's Context for one training (joining torchrun's process group when launched by it)."""
    rank, world, local_rank, local_world = torchrun_env()
    dev = resolve_device(device, local_rank)
    if threads:
        torch.set_num_threads(threads)
    elif local_world > 1:  # PyTorch's default (all cores) in every process would oversubscribe the machine
        torch.set_num_threads(max(1, torch.get_num_threads() // local_world))
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=timedelta(minutes=30),
                                device_id=dev if dev.type == "cuda" else None)
    ctx = Context(dev, amp_dtype(dev, amp), rank, world, local_rank, local_world)
    if amp and ctx.dtype is None and rank == 0:
        print("--amp: this CPU has no native bfloat16 (oneDNN reports none), where autocast is many times slower "
              "than float32: training in float32", file=sys.stderr)
    try:
        yield ctx
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


class GlooSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch across all processes, on any device.

    PyTorch's SyncBatchNorm runs on GPUs only; this one uses two differentiable all-reduces (the sum, then the
    sum of squared deviations from the global mean), so gloo on CPU gets the same forward and gradients as one
    process with the whole batch. In eval mode, or outside a process group, it is plain BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        import torch.distributed._functional_collectives as funcol  # all_reduce with autograd (sum: grads summed)

        all_reduce = lambda t: funcol.all_reduce(t, "sum", dist.group.WORLD)  # noqa: E731
        xf = x.float()
        count = torch.tensor(float(xf.numel() // xf.shape[1]), device=x.device)
        sums = all_reduce(torch.cat([xf.sum((0, 2, 3)), count[None]]))
        n = sums[-1]
        mean = sums[:-1] / n
        centred = xf - mean.view(1, -1, 1, 1)
        var = all_reduce(centred.pow(2).sum((0, 2, 3))) / n
        if self.track_running_stats:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
                self.num_batches_tracked.add_(1)
                self.running_mean.lerp_(mean.detach().to(self.running_mean), m)
                unbiased = var.detach() * n / (n - 1).clamp_min(1)
                self.running_var.lerp_(unbiased.to(self.running_var), m)
        y = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y.to(x.dtype)


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm2d in ``module`` (in place) by its synchronised form for ``device``; the state
    dict keys stay the same, so checkpoints load into the plain networks."""
    cls = nn.SyncBatchNorm if device.type == "cuda" else GlooSyncBatchNorm
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = cls(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            new.load_state_dict(child.state_dict())
            new.to(device=child.weight.device if child.affine else device)
            new.train(child.training)
            setattr(module, name, new)
        else:
            sync_batchnorm(child, device)
    return module
