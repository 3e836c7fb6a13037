"""Which process of a distributed job this is, and the few collectives the pipeline needs around its caches.

Under Lightning DDP (``hardware=ddp``: ``strategy=ddp``, one process per device) every process runs the
whole job. Lightning's subprocess launcher starts ranks 1..N-1 at the first distributed fit, each running
the same command from the top; a cluster (SLURM ``srun``, torchrun) starts them all at once. The
process group exists from that first fit on. Ranks take part in every fit (teacher, student, the
pruning fine-tune); rank 0 alone writes the caches, the artifact and ``results.json``, tests, and
benchmarks, and the others wait for it where they need what it wrote
(:func:`bertcompress.utils.cache.load_or_build`). Source: PyTorch's ``torch.distributed`` and
Lightning's rank-zero conventions (https://lightning.ai/docs/pytorch/stable/accelerators/gpu_intermediate.html).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

# where a launcher puts the process's rank (Lightning's own order: lightning.fabric.utilities.rank_zero)
RANK_ENV = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def distributed() -> bool:
    """True while a process group of more than one process is up (the ranks then run in lockstep)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def global_rank() -> int:
    """This process's rank: the process group's, else the launcher's environment (0 in a plain run)."""
    if distributed():
        import torch.distributed as dist

        return dist.get_rank()
    for key in RANK_ENV:
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def is_rank_zero() -> bool:
    """Whether this process writes what the job writes (caches, artifact, results, logs)."""
    return global_rank() == 0


def barrier() -> None:
    """Wait for every rank (nothing in a single process)."""
    if distributed():
        import torch.distributed as dist

        dist.barrier()


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a picklable object; ``value`` itself in a single process)."""
    if not distributed():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def rank_zero_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on the other ranks (which then find what rank 0 wrote)."""
    if not is_rank_zero():
        barrier()
    yield
    if is_rank_zero():
        barrier()


def leave_distributed() -> bool:
    """End the distributed part of a job: every rank meets; rank 0 closes the process group and goes on
    alone (tests, benchmark, results); returns True on the other ranks, which are then done."""
    if not distributed():
        return not is_rank_zero()
    import torch.distributed as dist

    dist.barrier()
    if dist.get_rank() != 0:
        return True
    dist.destroy_process_group()
    return False


def world_size(cfg) -> int:
    """The processes ``cfg.trainer`` runs a fit on: devices × nodes under a DDP strategy, else 1.

    Raises:
        ValueError: ``trainer.devices`` that is not a count (a list of ids counts its length; -1/"auto"
        are refused under DDP because the cache keys need the number).
    """
    trainer = cfg.trainer
    strategy = str(trainer.get("strategy") or "auto")
    if not strategy.startswith("ddp"):
        return 1
    devices = trainer.get("devices", 1)
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    if not isinstance(devices, int) and hasattr(devices, "__len__"):
        devices = len(devices)
    if not isinstance(devices, int) or devices < 1:
        raise ValueError(f"trainer.devices={devices!r} with strategy={strategy}: give the number of processes, e.g. 2")
    return devices * int(trainer.get("num_nodes") or 1)


def check_launch(cfg) -> None:
    """Refuse a DDP job that Lightning's subprocess launcher cannot start: inside a local multirun
    (``-m`` with the basic, joblib or submitit_local launcher) it would start each rank as a whole new
    sweep. Under SLURM, ``srun`` starts the ranks itself (tasks per node = devices), which works.

    Raises:
        ValueError: DDP in a multirun with no cluster that starts the ranks.
    """
    from bertcompress import is_multirun

    if world_size(cfg) > 1 and is_multirun() and int(os.environ.get("SLURM_NTASKS", "1")) < world_size(cfg):
        raise ValueError(
            f"hardware=ddp (trainer.strategy={cfg.trainer.strategy}, {world_size(cfg)} processes) in a multirun: "
            "Lightning starts the other ranks by re-running the command, which a local sweep cannot do. Run each "
            "DDP job as a single run, or sweep on SLURM with tasks_per_node = trainer.devices"
        )
