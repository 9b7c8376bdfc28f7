"""TS2Vec, AutoTCL and COMET on the UCR/UEA sets bundled with aeon (TS2Vec's SVM protocol).

    python benchmarks/ucr.py --datasets GunPoint --methods ts2vec --seeds 0 --iters 20
    python benchmarks/ucr.py --threads 1 --jobs 2          # the full table, 3 seeds

Each (dataset, method, seed) trains through ``contrastkit.fit`` with the method's recipe (plus
the variant's overrides) on the official train split (default length: TS2Vec's 200 iterations,
600 above 100,000 values, as ``train.max_steps``), encodes both splits with the averaged encoder,
and scores an RBF SVM (C by 5-fold CV) on the test split — the final iteration, no model
selection. Next to
it: raw-input 1-NN Euclidean and the same encoder at random init (+ SVM), computed in the same
run, and the TS2Vec paper's accuracies as quoted in the project's issue #7.

Results go to ``benchmarks/results/ucr.md`` after every run; the raw runs are kept in the file,
so ``--merge`` adds new runs to an earlier table (e.g. the expensive sets run later).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shlex
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
DATASETS = (
    "GunPoint",
    "ArrowHead",
    "ItalyPowerDemand",
    "OSULeaf",
    "ACSF1",
    "BasicMotions",
    "JapaneseVowels",
    "PickupGestureWiimoteZ",
)
METHODS = (
    "ts2vec",
    "autotcl",
    "comet",
    "autotcl-dot",
    "autotcl-infots",
    "ts2vec-jitter-scaling",
)
#: benchmark variants: (recipe, config overrides). ``autotcl``: the spec's cosine in the global
#: InfoNCE (the official forecasting code); ``autotcl-dot``: the recipe's raw dot products, as
#: InfoTS (the authors' classification code); ``autotcl-infots``: AutoTCL's learned views with
#: InfoTS's whole encoder loss (dot-product NT-Xent over both views + 1 × unnormalised local
#: loss over 8 segments, ``infots.py::fit``); ``ts2vec-jitter-scaling``: TS2Vec with Um et al.'s
#: jitter and scaling on each crop. ``ts2vec`` and ``comet`` are their recipes.
INFOTS = {
    "global_normalize": False,
    "global_intra_view": True,
    "local_normalize": False,
    "local_weight": 1.0,
    "local_segments": 8,
}
VARIANTS = {
    "autotcl": ("autotcl", {"timeseries.autotcl.global_normalize": True}),
    "autotcl-dot": ("autotcl", {}),
    "autotcl-infots": ("autotcl", {f"timeseries.autotcl.{k}": v for k, v in INFOTS.items()}),
    "ts2vec-jitter-scaling": ("ts2vec", {"timeseries.augment": {"jitter": 0.03, "scaling": 0.1}}),
}
#: raw 1-NN Euclidean test accuracy quoted in issue #7 / DATA.md
ISSUE_1NN = {
    "GunPoint": 0.913,
    "ArrowHead": 0.800,
    "ItalyPowerDemand": 0.955,
    "OSULeaf": 0.521,
    "ACSF1": 0.540,
    "BasicMotions": 0.725,
}
#: TS2Vec paper (Yue et al. 2022) accuracies as quoted in issue #7
PAPER_TS2VEC = {"GunPoint": 0.980, "ArrowHead": 0.857, "ItalyPowerDemand": 0.925, "OSULeaf": 0.851}
RAW_MARK = "<!-- raw-runs: "


def run_one(dataset: str, method: str, seed: int, iters: int | None, threads: int, batch: int):
    """Train and score one (dataset, method, seed) with ``contrastkit.fit``; runs in a worker
    process (the run directory is temporary: the row keeps what the table needs)."""
    import contrastkit as ck
    from contrastkit.timeseries import default_iters, load_timeseries
    from contrastkit.train.run import quiet_lightning

    quiet_lightning()
    data = load_timeseries(f"ucr:{dataset}")
    recipe, options = VARIANTS.get(method, (method, {}))
    steps = default_iters(data.x_train) if iters is None else iters
    config = ck.load_config(
        recipe,
        {
            "data.source": data.name,
            "seed": seed,
            "train.max_steps": steps,
            "train.batch_size": batch,
            "train.num_threads": threads,
            "train.progress_bar": False,
            "eval.report": False,
            **options,
        },
    )
    with tempfile.TemporaryDirectory() as out:
        metrics = ck.fit(config, data=data, out=Path(out) / "run").metrics
    row = {
        "dataset": dataset,
        "method": method,
        "seed": seed,
        "svm_accuracy": metrics["svm_accuracy"],
        "n_iters": steps,
        "train_seconds": metrics["train_seconds"],
    }
    print(
        f"{dataset:>22} {method:>8} seed {seed}: acc {row['svm_accuracy']:.4f} "
        f"({row['n_iters']} it, {row['train_seconds']:.0f}s train)",
        flush=True,
    )
    return row


def baselines(dataset: str, threads: int) -> dict:
    """1-NN Euclidean on the z-normalised series (the archives' ED baseline) and a random-init
    TS2Vec encoder + SVM (seed 0)."""
    torch.set_num_threads(threads)
    from contrastkit import load_config
    from contrastkit.timeseries import TS2Vec, load_timeseries, one_nn_accuracy, svm_accuracy

    data = load_timeseries(f"ucr:{dataset}")
    torch.manual_seed(0)  # the initial weights of seed 0's runs (fit seeds before building)
    model = TS2Vec(data.channels, "ts2vec", load_config("ts2vec").timeseries)
    random_init = svm_accuracy(
        model.encode(data.x_train), data.y_train, model.encode(data.x_test), data.y_test
    )
    return {
        "dataset": dataset,
        "n_train": len(data.x_train),
        "n_test": len(data.x_test),
        "length": data.length,
        "equal_length": data.equal_length,
        "channels": data.channels,
        "classes": data.num_classes,
        "one_nn": one_nn_accuracy(data.x_train, data.y_train, data.x_test, data.y_test),
        "one_nn_input": one_nn_accuracy(
            data.x_train, data.y_train, data.x_test, data.y_test, znormalize=False
        ),
        "random_init": random_init,
    }


def fmt(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f} (1)"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} ({len(values)})"


def load_previous(path: Path) -> tuple[list[dict], dict[str, dict], list[str]]:
    """Runs, baselines and commands kept in an earlier ``ucr.md`` (empty when there is none)."""
    raw = load_raw(path)
    return raw.get("runs", []), raw.get("baselines", {}), raw.get("commands", [])


def load_raw(path: Path) -> dict:
    match = path.exists() and re.search(re.escape(RAW_MARK) + r"(.*?) -->", path.read_text(), re.S)
    return json.loads(match.group(1)) if match else {}


def _elide_notes(command: str) -> str:
    """``command`` with the text after each ``--note``/``--drop-note`` shortened to ``...``."""
    words = shlex.split(command)
    flags = ("--note", "--drop-note")
    previous = ["", *words[:-1]]
    return shlex.join(
        ["..." if flag in flags else w for flag, w in zip(previous, words, strict=True)]
    )


def write(
    path: Path,
    runs: list[dict],
    bases: dict[str, dict],
    commands: list[str],
    notes: list[str] | None = None,
) -> None:
    datasets = [d for d in DATASETS if d in bases] + sorted(set(bases) - set(DATASETS))
    methods = [m for m in METHODS if any(r["method"] == m for r in runs)]
    lines = [
        "# UCR/UEA classification: TS2Vec, AutoTCL, COMET (TS2Vec's SVM protocol)",
        "",
        "Test accuracy of an RBF SVM (C by 5-fold CV; C = ∞ without CV below 50 series or 5 per "
        "class) on max-pooled representations of the averaged encoder after the **final** "
        "training iteration; mean ± std over seeds (number of seeds in parentheses). Same "
        "encoder for all methods (TS2Vec's: 64 hidden, 320 output, 10 + 1 dilated blocks), "
        "batch 8, AdamW lr 1e-3; iterations: TS2Vec's rule (200, or 600 above 100,000 training "
        "values) unless the command says otherwise. 1-NN ED (on per-series z-normalised "
        "inputs, the archives' convention) and the random-init encoder (+ the same SVM) are "
        "computed in the same run; the TS2Vec paper numbers are those quoted in issue #7. "
        "Inputs: UCR sets as archived (the non-normalised PickupGestureWiimoteZ standardised "
        "with the training mean/std), UEA sets standardised per channel with training "
        "statistics, as TS2Vec's loaders do.",
        "",
        f"Machine: {platform.machine()}, torch {torch.__version__}, CPU only, threads pinned "
        "per process (see the commands).",
        "",
        "Commands (note texts elided; they are the notes below):",
        "",
        *[f"    {_elide_notes(c)}" for c in commands],
        "",
        "| dataset | train/test | length | ch | classes | 1-NN ED | 1-NN ED (issue) | "
        "1-NN ED (model input) | "
        "random-init + SVM | TS2Vec paper | " + " | ".join(f"{m} (ours)" for m in methods) + " |",
        "|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(methods),
    ]
    for d in datasets:
        b = bases[d]
        accs = {
            m: [r["svm_accuracy"] for r in runs if r["dataset"] == d and r["method"] == m]
            for m in methods
        }
        length = f"{b['length']}" + ("" if b["equal_length"] else " (var.)")
        issue = f"{ISSUE_1NN[d]:.3f}" if d in ISSUE_1NN else "—"
        paper = f"{PAPER_TS2VEC[d]:.3f}" if d in PAPER_TS2VEC else "—"
        lines.append(
            f"| {d} | {b['n_train']}/{b['n_test']} | {length} | {b['channels']} | "
            f"{b['classes']} | {b['one_nn']:.3f} | {issue} | {b.get('one_nn_input', float('nan')):.3f} | "
            f"{b['random_init']:.3f} | {paper} | "
            + " | ".join(fmt(accs[m]) for m in methods)
            + " |"
        )
    lines += [
        "",
        "Training time per run (seconds, mean over seeds) and iterations:",
        "",
        "| dataset | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for d in datasets:
        cells = []
        for m in methods:
            rs = [r for r in runs if r["dataset"] == d and r["method"] == m]
            cells.append(
                f"{statistics.mean(r['train_seconds'] for r in rs):.0f} s, {rs[0]['n_iters']} it"
                if rs
                else "—"
            )
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    missing = [
        f"{d}/{m}"
        for d in dict.fromkeys([*DATASETS, *datasets])
        for m in METHODS[:3]
        if not any(r["dataset"] == d and r["method"] == m for r in runs)
    ]
    if missing:
        lines += ["", "Not run (time budget): " + ", ".join(missing) + "."]
    if notes:
        lines += ["", "Notes:", "", *[f"- {n}" for n in notes]]
    raw = json.dumps({"runs": runs, "baselines": bases, "commands": commands, "notes": notes})
    lines += ["", f"{RAW_MARK}{raw} -->", ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS[:3]), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--iters", type=int, default=None, help="default: TS2Vec's 200/600 rule")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS / "ucr.md")
    parser.add_argument("--merge", action="store_true", help="keep the runs already in --out")
    parser.add_argument(
        "--merge-from", nargs="*", type=Path, default=[], help="also keep the runs of these tables"
    )
    parser.add_argument("--note", action="append", default=[], help="a line for the notes")
    parser.add_argument(
        "--drop-note",
        action="append",
        default=[],
        help="drop the kept notes that start with this text (to replace a stale one)",
    )
    parser.add_argument(
        "--skip-done", action="store_true", help="with --merge: do not rerun runs already kept"
    )
    parser.add_argument(
        "--merge-only", action="store_true", help="train nothing: rescore baselines, rewrite --out"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/ucr.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    runs, bases, commands, notes = [], {}, [command], []
    key = lambda r: (r["dataset"], r["method"], r["seed"])  # noqa: E731
    for path in [args.out] * args.merge + args.merge_from:
        more, more_bases, earlier = load_previous(path)
        notes += [n for n in load_raw(path).get("notes") or [] if n not in notes]
        seen = {key(r) for r in more}
        runs = [r for r in runs if key(r) not in seen] + more
        bases = {**bases, **more_bases}
        commands = list(dict.fromkeys([*commands[:-1], *earlier, command]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    chosen = [] if args.merge_only else args.datasets
    for d in dict.fromkeys([*chosen, *bases]):  # merged sets are re-scored too
        bases[d] = baselines(d, args.threads)
        print(f"{d}: 1-NN ED {bases[d]['one_nn']:.4f}, random init {bases[d]['random_init']:.4f}")
    jobs = [(d, m, s) for d in args.datasets for m in args.methods for s in args.seeds]
    if args.skip_done:
        done = {key(r) for r in runs}
        jobs = [job for job in jobs if job not in done]
    notes = [n for n in notes if not any(n.startswith(d) for d in args.drop_note)]
    notes += [n for n in args.note if n not in notes]
    if args.merge_only:
        jobs = []
        write(args.out, runs, bases, commands, notes)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [
            pool.submit(run_one, d, m, s, args.iters, args.threads, args.batch_size)
            for d, m, s in jobs
        ]
        for future in as_completed(futures):
            row = future.result()
            runs = [r for r in runs if key(r) != key(row)] + [row]
            write(args.out, runs, bases, commands, notes)
    print(f"{len(jobs)} runs in {(time.perf_counter() - started) / 60:.1f} min → {args.out}")


if __name__ == "__main__":
    main()
