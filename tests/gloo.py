"""Run a function in two (or more) gloo processes on CPU and collect what each rank returns."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def run_on_ranks(compute: Callable[[int], Any], world: int = 2) -> dict[int, Any]:
    """``{rank: compute(rank)}`` from ``world`` processes joined in one gloo process group.

    The processes are forked, so they inherit the imported modules (spawning re-imports torch,
    several seconds each on a busy machine) and ``compute`` may be any callable, closures too.
    """
    results = mp.Manager().dict()
    mp.start_processes(
        _worker, args=(_free_port(), world, compute, results), nprocs=world, start_method="fork"
    )
    return dict(results)


def _worker(rank: int, port: int, world: int, compute: Callable, results: dict) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    torch.set_num_threads(1)
    try:
        results[rank] = compute(rank)
        dist.barrier()  # NOTES.md: destroying right after a gathered backward aborted a process
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
