"""Every objective recipe on the same data, backbone and budget: final-epoch kNN and linear-probe
test accuracy over seeds, wall time per epoch, next to baselines that need no training; plus a
small-batch column for SimCLR, DCL and DCLW (the DCL paper's claim: DCL degrades less).

    python benchmarks/objectives.py --data digits --epochs 50 --jobs 2 --threads 1
    python benchmarks/objectives.py --data fashion-mnist --epochs 1 --jobs 2 --threads 1

Each (recipe, seed, batch) trains in its own process (``--jobs`` at a time, ``--threads`` torch
threads each). Finished runs are kept in ``benchmarks/results/objectives_<data>.json`` (keyed by
their settings), so an interrupted benchmark resumes and ``--methods`` can add rows later; the
markdown table ``objectives_<data>.md`` is rewritten from all of them after every run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from simclr_fashion_mnist import COLUMNS, scores  # the same evaluation protocol
from tables import mean_std as cell

import contrastkit as ck
from contrastkit.config import available_recipes
from contrastkit.methods import build_method
from contrastkit.methods.registry import METHODS, needs_labels
from contrastkit.train.run import quiet_lightning

RESULTS = Path(__file__).resolve().parent / "results"
SMALL_BATCH_METHODS = ("simclr", "dcl", "dclw")
BASELINE_BATCH = 256  # the batch of the SimCLR runs that also score their random-init encoder


def self_supervised_image_recipes() -> list[str]:
    """The bundled recipes trained on images without labels (this benchmark's default)."""
    recipes = []
    for recipe in available_recipes():
        config = ck.load_config(recipe)
        if config.method in METHODS and not needs_labels(config):
            recipes.append(recipe)
    return recipes


def run(recipe: str, source: str, settings: dict[str, object], seed: int, threads: int) -> dict:
    """Train one recipe with one seed; scores of the trained and of the random-init encoder."""
    torch.set_num_threads(threads)
    quiet_lightning()
    data = ck.load_data(source, seed=0)  # one fixed split for every run; seeds vary training
    overrides = {**settings, "data.source": source, "seed": seed, "train.num_threads": threads}
    config = ck.load_config(recipe, [f"{key}={value}" for key, value in overrides.items()])
    random_init = None
    if recipe == "simclr" and settings["train.batch_size"] == BASELINE_BATCH:  # once per seed
        torch.manual_seed(seed)
        untrained = build_method(config, channels=data.channels, image_size=data.image_size)
        random_init = scores(untrained.embed(data.x_train), untrained.embed(data.x_test), data)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = ck.fit(config, data=data, out=Path(tmp) / "run")
        seconds = time.perf_counter() - started
    trained = scores(result.method.embed(data.x_train), result.method.embed(data.x_test), data)
    epoch_seconds = result.metrics["train_seconds"] / config.train.epochs  # Trainer.fit only
    print(f"{recipe} seed {seed} {settings}: {trained} ({epoch_seconds:.1f} s/epoch)", flush=True)
    return {
        "trained": trained,
        "random": random_init,
        "train_epoch_seconds": epoch_seconds,
        "fit_seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--methods", nargs="+", default=self_supervised_image_recipes())
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--small-batch", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once (processes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("overrides", nargs="*", help="config overrides for every recipe")
    args = parser.parse_args()
    unknown = sorted(set(args.methods) - set(available_recipes()))
    if unknown:
        parser.error(f"unknown recipes {unknown}; available: {available_recipes()}")

    common = {"train.epochs": args.epochs, "train.progress_bar": False}
    common |= dict(item.split("=", 1) for item in args.overrides)
    tasks = []
    for method in args.methods:
        batches = [args.batch] + ([args.small_batch] if method in SMALL_BATCH_METHODS else [])
        for batch in batches:
            settings = {**common, "train.batch_size": batch}
            tasks += [(method, settings, seed) for seed in args.seeds]

    store = RESULTS / f"objectives_{args.data}.json"
    done = json.loads(store.read_text()) if store.exists() else {"runs": {}, "commands": []}
    command = f"python {' '.join(shlex.quote(a) for a in sys.argv)}"
    if command not in done["commands"]:
        done["commands"].append(command)
    todo = [t for t in tasks if key(*t) not in done["runs"]]
    print(f"{len(tasks) - len(todo)} of {len(tasks)} runs already stored; training {len(todo)}")

    torch.set_num_threads(args.threads)
    data = ck.load_data(args.data, seed=0)
    done["raw"] = scores(data.x_train.flatten(1), data.x_test.flatten(1), data)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = {
            pool.submit(run, method, args.data, settings, seed, args.threads): key(
                method, settings, seed
            )
            for method, settings, seed in todo
        }
        for future in as_completed(futures):
            done["runs"][futures[future]] = future.result()
            write(store, done)
            write_table(args, tasks, done)
    write(store, done)
    write_table(args, tasks, done)


def key(method: str, settings: dict, seed: int) -> str:
    return json.dumps([method, settings, seed], sort_keys=True)


def write(path: Path, content: dict) -> None:
    """Through a temporary file and a rename, so an interrupted run never truncates the store."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(content, indent=1, sort_keys=True))
    os.replace(tmp, path)


def write_table(args: argparse.Namespace, tasks: list, done: dict) -> None:
    groups: dict[tuple[str, int], list[dict]] = {}
    for method, settings, seed in tasks:
        result = done["runs"].get(key(method, settings, seed))
        if result is not None:
            groups.setdefault((method, settings["train.batch_size"]), []).append(result)
    random_init = [r["random"] for r in groups.get(("simclr", args.batch), []) if r["random"]]
    lines = [
        f"# Objectives on {args.data}: final-epoch test accuracy, same backbone and budget",
        "",
        *(f"Command: `{c}`" for c in done["commands"]),
        "",
        f"{time.strftime('%Y-%m-%d')}; torch {torch.__version__}; {platform.machine()} CPU, "
        f"{args.jobs} run(s) at a time with {args.threads} torch thread(s) each (pinned, on a "
        "shared machine: compare times within this table only); mean ± sample std over seeds "
        f"{args.seeds}; the test split is held out and fixed; numbers are the final epoch's.",
        "",
        f"Every recipe `configs/<method>.yaml` as bundled (small-cnn backbone, its own views and "
        f"options), with {args.epochs} epochs"
        + (f" and {' '.join(args.overrides)}" if args.overrides else "")
        + ". kNN: weighted vote, cosine, τ=0.1 (InstDisc), k=200 and k=20. Linear probe: "
        "standardised frozen pre-projection features + logistic regression, C chosen on a split "
        "of the train set.",
        "",
        "| method (recipe) | batch | seeds | kNN k=200 | kNN k=20 | linear probe | s / epoch |",
        "|---|---|---|---|---|---|---|",
        "| raw pixels (no training) | – | – | "
        + " | ".join(f"{done['raw'][c]:.4f}" for c in COLUMNS)
        + " | – |",
    ]
    if random_init:
        lines.append(
            f"| random-init small-cnn (no training) | – | {len(random_init)} | "
            + " | ".join(cell([r[c] for r in random_init]) for c in COLUMNS)
            + " | – |"
        )
    wall_clock = False
    for (method, batch), results in sorted(groups.items(), key=lambda g: (g[0][0], -g[0][1])):
        trained = [r["trained"] for r in results]
        # runs stored before 2026-11-29 kept the wall time of the whole fit (evaluation included)
        seconds = statistics.median(
            r.get("train_epoch_seconds", r.get("epoch_seconds")) for r in results
        )
        marked = any("train_epoch_seconds" not in r for r in results)
        wall_clock |= marked
        lines.append(
            f"| {method} | {batch} | {len(results)} | "
            + " | ".join(cell([t[c] for t in trained]) for c in COLUMNS)
            + f" | {seconds:.1f}{'*' if marked else ''} |"
        )
    lines += [
        "",
        "s / epoch: median over seeds of the training time (Lightning's fit) per epoch"
        + (
            "; * marks runs timed by the wall time of the whole `fit` (final kNN and probe "
            "evaluation included, and for runs started after 23:40 the HTML report), divided by "
            "the epochs."
            if wall_clock
            else "."
        ),
    ]
    drops = []
    for method in SMALL_BATCH_METHODS:
        big, small = groups.get((method, args.batch)), groups.get((method, args.small_batch))
        if big and small:
            drop = statistics.mean(r["trained"]["knn"] for r in big) - statistics.mean(
                r["trained"]["knn"] for r in small
            )
            drops.append(f"{method} {drop:+.4f}")
    if drops:
        lines += [
            "",
            f"kNN (k=200) lost going from batch {args.batch} to {args.small_batch} (mean over "
            f"seeds; DCL's claim is that it loses less than SimCLR): {', '.join(drops)}.",
        ]
    path = RESULTS / f"objectives_{args.data}.md"
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
