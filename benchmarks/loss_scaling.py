"""Forward+backward time and peak memory of NT-Xent at growing batch sizes: contrastkit (dense
and tiled paths) vs lightly's NTXentLoss vs pytorch-metric-learning's NTXentLoss, in one run,
next to the matmul bound (the three N×N×D products of forward+backward, timed alone).

    python benchmarks/loss_scaling.py --sizes 1024 4096 8192 --threads 2

Each measurement runs in its own process under a 20 GB address-space limit, so a library that
tries to allocate too much reports OOM instead of taking the machine down. Peak memory is the
growth of the process's maximum resident set over its state just before the first call.
Writes ``benchmarks/results/loss_scaling.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
IMPLEMENTATIONS = (
    "matmul bound",
    "contrastkit tiled",
    "contrastkit dense",
    "lightly",
    "pytorch-metric-learning",
)
LIMIT_BYTES = 20 * 2**30


def measure(impl: str, batch: int, dim: int, threads: int, repeats: int) -> dict:
    """One implementation at ``2 × batch`` embeddings (runs inside the child process)."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    z1 = torch.randn(batch, dim, requires_grad=True)
    z2 = torch.randn(batch, dim, requires_grad=True)
    loss_fn = _loss(impl)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    seconds = []
    for _ in range(repeats + 1):  # the first call warms up
        started = time.perf_counter()
        loss_fn(z1, z2)
        seconds.append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"seconds": statistics.median(seconds[1:]), "peak_bytes": peak}


def _loss(impl: str):
    import torch

    if impl == "matmul bound":

        def run(z1, z2):  # in row blocks, so the bound exists at every size (no N×N matrix)
            z = torch.cat([z1, z2]).detach()
            grad_rows, grad_cols = torch.empty_like(z), torch.zeros_like(z)
            for start in range(0, len(z), 1024):
                block = z[start : start + 1024]
                logits = block @ z.T  # the forward product
                grad_rows[start : start + 1024] = logits @ z  # the two backward products
                grad_cols += logits.T @ block
            return grad_rows, grad_cols

        return run
    if impl.startswith("contrastkit"):
        from contrastkit.functional import nt_xent

        backend = impl.split()[1]
        return lambda z1, z2: nt_xent(z1, z2, temperature=0.1, backend=backend).backward()
    if impl == "lightly":
        from lightly.loss import NTXentLoss

        loss = NTXentLoss(temperature=0.1)
        return lambda z1, z2: loss(z1, z2).backward()
    from pytorch_metric_learning.losses import NTXentLoss as PMLNTXent

    loss = PMLNTXent(temperature=0.1)

    def run(z1, z2):
        labels = torch.arange(len(z1)).repeat(2)
        loss(torch.cat([z1, z2]), labels).backward()

    return run


def child(impl: str, batch: int, dim: int, threads: int, repeats: int) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        impl,
        str(batch),
        str(dim),
        str(threads),
        str(repeats),
    ]
    limit = f"ulimit -v {LIMIT_BYTES // 1024}; exec " + " ".join(shlex.quote(c) for c in command)
    done = subprocess.run(["bash", "-c", limit], capture_output=True, text=True)
    if done.returncode != 0:
        oom = "memory" in done.stderr.lower() or "alloc" in done.stderr.lower()
        return {"error": "OOM (> 20 GB)" if oom else done.stderr.strip().splitlines()[-1][:80]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 8192])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        help="implementation@size pairs to skip, e.g. lightly@65536",
    )
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        impl, *numbers = args.child
        print(json.dumps(measure(impl, *map(int, numbers))))
        return
    rows = {}
    for batch in args.sizes:
        for impl in IMPLEMENTATIONS:
            key = f"{impl}@{batch}"
            rows[key] = (
                {"error": "skipped"}
                if key in args.skip
                else child(impl, batch, args.dim, args.threads, args.repeats)
            )
            print(key, rows[key], flush=True)
    write_table(args, rows)


def write_table(args: argparse.Namespace, rows: dict) -> None:
    def cell(result: dict) -> str:
        if "error" in result:
            return result["error"]
        return f"{result['seconds']:.2f} s / {result['peak_bytes'] / 2**20:,.0f} MB"

    lines = [
        "# NT-Xent forward+backward: time / peak memory",
        "",
        f"Command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`",
        "",
        f"{time.strftime('%Y-%m-%d')}; {platform.machine()} CPU, {args.threads} torch threads (pinned), "
        f"dimension {args.dim}, fp32, median of {args.repeats} after one warm-up; peak = growth of max RSS "
        "in a fresh process. 'matmul bound' times the three N×N×D products alone (in row blocks of "
        "1,024, so it needs no N×N matrix).",
        "",
        "| embeddings | " + " | ".join(IMPLEMENTATIONS) + " |",
        "|---|" + "---|" * len(IMPLEMENTATIONS),
    ]
    for batch in args.sizes:
        lines.append(
            f"| 2×{batch:,} | "
            + " | ".join(cell(rows[f"{i}@{batch}"]) for i in IMPLEMENTATIONS)
            + " |"
        )
    lines += [
        "",
        "Ratios measured in this run (contrastkit tiled vs the bound and vs lightly):",
        "",
    ]
    for batch in args.sizes:
        tiled, bound, lightly = (
            rows[f"{i}@{batch}"] for i in ("contrastkit tiled", "matmul bound", "lightly")
        )
        parts = []
        if "error" not in tiled and "error" not in bound:
            parts.append(f"{tiled['seconds'] / bound['seconds']:.2f}× the bound")
        if "error" not in tiled and "error" not in lightly:
            parts.append(f"{tiled['seconds'] / lightly['seconds']:.2f}× lightly's time")
            parts.append(f"{tiled['peak_bytes'] / lightly['peak_bytes']:.3f}× its memory")
        if parts:
            lines.append(f"- 2×{batch:,}: " + ", ".join(parts))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "loss_scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
