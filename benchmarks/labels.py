"""Learning from labels on Fashion-MNIST: SupCon vs cross-entropy vs SimCLR with the same
backbone and budget, Hydra vs SupCon, Hydra's class-relationship read-out against the supervised
confusion matrix (footwear and upper-body groups), and effective rank vs SimCLR.

    python benchmarks/labels.py --epochs 4 --train-size 10000 --jobs 2 --threads 1

(12 runs of ~5 min training + ~1 min evaluation each: 40 min of wall time on the shared 2-core
machine at a load of 6-9; about half that on an idle one.)

Final epoch, held-out test split (the official 10k test images), seeds 0-2. Every method trains
on the same stratified subset of the training images (``--train-size``, fixed; the CPU budget)
with small-cnn (pool 2), two small-gray views, batch 256, AdamW lr 2e-3 and τ = 0.2 for every
contrastive loss (Hydra's gate scale 1/τ); recipes ``configs/{simclr,supcon,ce,hydra}.yaml``.
Each (method, seed) trains in its own process (``--jobs`` at a time, ``--threads`` torch threads
each). Finished runs are kept in ``benchmarks/results/labels.json`` (keyed by their settings), so
an interrupted benchmark resumes; ``labels.md`` is rewritten after every run, with the read-out
plot in ``labels_relatedness.png``.

Read-out: relatedness of classes ``a, b`` from the trained gates (``active``: fraction of open
dimensions of ``g(a, b)``; ``l1``: mean gate; ``cosine``: cosine of single-class gates), compared
over the 45 class pairs with the symmetrised test confusion matrix of the cross-entropy model of
the same seed (Spearman ρ), and the group AUC: the probability that a within-group pair (footwear
{sandal, sneaker, ankle boot}, upper body {T-shirt, pullover, coat, shirt}: 9 pairs) is rated
more related than a pair across groups or with another class (36 pairs). Untrained gates (same
seed) are the no-training baseline.
"""

from __future__ import annotations

import argparse
import itertools
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

import numpy as np
import scipy.stats
import torch
from simclr_fashion_mnist import COLUMNS, scores  # the same evaluation protocol
from tables import mean_std

import contrastkit as ck
from contrastkit.data import ImageData
from contrastkit.diagnostics.spectrum import spectrum_summary
from contrastkit.functional.hydra import RELATEDNESS
from contrastkit.methods import build_method
from contrastkit.objectives.supervised import plot_relatedness
from contrastkit.train.run import quiet_lightning

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("simclr", "supcon", "ce", "hydra")
NAMES = {
    "simclr": "SimCLR (views)",
    "supcon": "SupCon (labels)",
    "supcon-simclr": "SupCon + NT-Xent",
    "ce": "cross-entropy",
    "hydra": "Hydra (arbitrary pairs)",
}
FOOTWEAR, UPPER_BODY = (5, 7, 9), (0, 2, 4, 6)
SHORT = (
    "T-shirt",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Boot",
)


def subset(data: ImageData, size: int) -> ImageData:
    """A fixed stratified subset of the training images (the test split is untouched)."""
    if size >= len(data.x_train):
        return data
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(data.x_train), generator=generator)
    per_class = size // data.num_classes
    keep = torch.cat([order[data.y_train[order] == c][:per_class] for c in range(data.num_classes)])
    keep = keep.sort().values
    return ImageData(
        f"{data.name}-{len(keep)}",
        data.x_train[keep],
        data.y_train[keep],
        data.x_test,
        data.y_test,
        data.classes,
    )


def settings_for(method: str, args: argparse.Namespace) -> dict[str, object]:
    settings: dict[str, object] = {
        "train.epochs": args.epochs,
        "train.batch_size": args.batch,
        "train.progress_bar": False,
        "model.backbone_options": "{pool: 2}",
        "optim.lr": args.lr,
        "eval.linear_probe": False,  # the benchmark probes the saved features itself
        "eval.report": False,
    }
    if method != "ce":
        settings["objective.temperature"] = args.temperature
    if method == "hydra":
        settings["objective.options.warmup_epochs"] = args.hydra_warmup
    return settings | dict(item.split("=", 1) for item in args.overrides)


@torch.no_grad()
def head_embeddings(method, x: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    """Projection-head outputs (what the objective sees) of un-augmented inputs, eval mode."""
    method.eval()
    return torch.cat([method.project(chunk).float() for chunk in x.split(batch_size)]).numpy()


def run(method: str, settings: dict, seed: int, threads: int, train_size: int) -> dict:
    """Train one method with one seed; scores, effective ranks and the method's extras."""
    torch.set_num_threads(threads)
    quiet_lightning()
    data = subset(ck.load_data("fashion-mnist", seed=0), train_size)
    overrides = {**settings, "seed": seed, "train.num_threads": threads}
    config = ck.load_config(method, [f"{key}={value}" for key, value in overrides.items()])
    torch.manual_seed(seed)
    untrained = build_method(config, channels=data.channels, image_size=data.image_size)
    out: dict = {}
    if method == "simclr":  # the encoder at random init, once per seed
        train_f, test_f = untrained.embed(data.x_train), untrained.embed(data.x_test)
        out["random"] = scores(train_f, test_f, data) | {
            "rank": spectrum_summary(test_f.numpy())["effective_rank"],
            "rank_head": spectrum_summary(head_embeddings(untrained, data.x_test))[
                "effective_rank"
            ],
        }
    if method == "hydra":
        out["untrained_relatedness"] = {
            s: untrained.objective.relatedness(s).tolist() for s in RELATEDNESS
        }
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = ck.fit(config, data=data, out=Path(tmp) / "run")
        seconds = time.perf_counter() - started
        with np.load(result.run_dir / "embeddings.npz") as arrays:
            train_f, test_f = arrays["train_features"], arrays["test_features"]
    trained = scores(torch.from_numpy(train_f), torch.from_numpy(test_f), data)
    embeddings = head_embeddings(result.method, data.x_test)
    out["trained"] = trained | {
        "rank": spectrum_summary(test_f)["effective_rank"],
        "rank_head": spectrum_summary(embeddings)["effective_rank"],
        "minutes": seconds / 60,
    }
    if method == "ce":  # the supervised model's own test confusion matrix
        with torch.no_grad():
            logits = result.method.objective.classifier(torch.from_numpy(embeddings))
        predicted = logits.argmax(1).numpy()
        confusion = np.zeros((10, 10), dtype=np.int64)
        np.add.at(confusion, (data.y_test.numpy(), predicted), 1)
        out["confusion"] = confusion.tolist()
        out["trained"]["classifier"] = float((predicted == data.y_test.numpy()).mean())
    if method == "hydra":
        out["relatedness"] = {
            s: result.method.objective.relatedness(s).tolist() for s in RELATEDNESS
        }
    print(f"{method} seed {seed}: {out['trained']}", flush=True)
    return out


def off_diagonal(matrix: np.ndarray) -> np.ndarray:
    """The 45 upper-triangle entries of a symmetrised 10 × 10 matrix."""
    matrix = np.asarray(matrix, dtype=np.float64)
    rows, cols = np.triu_indices(len(matrix), k=1)
    return (matrix + matrix.T)[rows, cols]


def group_auc(values: np.ndarray, size: int = 10) -> float:
    """P(a within-group pair scores above a pair outside the groups), ties count one half."""
    groups = [set(itertools.combinations(g, 2)) for g in (FOOTWEAR, UPPER_BODY)]
    rows, cols = np.triu_indices(size, 1)
    within = np.array([(a, b) in groups[0] | groups[1] for a, b in zip(rows, cols, strict=True)])
    inside, outside = values[within][:, None], values[~within][None, :]
    return float((inside > outside).mean() + 0.5 * (inside == outside).mean())


def readout_numbers(done: dict, key_of) -> dict[str, dict[str, list[float]]]:
    """Per statistic: Spearman ρ with the same seed's CE confusion and group AUC, trained and
    untrained gates, over the seeds that have both runs."""
    numbers: dict[str, dict[str, list[float]]] = {}
    for seed in done["seeds"]:
        hydra, ce = done["runs"].get(key_of("hydra", seed)), done["runs"].get(key_of("ce", seed))
        if hydra is None or ce is None:
            continue
        confusion = off_diagonal(ce["confusion"])
        for statistic in RELATEDNESS:
            entry = numbers.setdefault(statistic, {})
            for which, source in (
                ("trained", "relatedness"),
                ("untrained", "untrained_relatedness"),
            ):
                values = off_diagonal(hydra[source][statistic])
                rho = scipy.stats.spearmanr(values, confusion).statistic
                entry.setdefault(f"rho_{which}", []).append(float(np.nan_to_num(rho)))
                entry.setdefault(f"auc_{which}", []).append(group_auc(values))
        numbers.setdefault("confusion", {}).setdefault("auc_trained", []).append(
            group_auc(confusion)
        )
    return numbers


def cell(values: list[float], digits: int = 4) -> str:
    return mean_std(values, digits) if values else "–"


def write_table(args: argparse.Namespace, done: dict, key_of) -> None:
    results = {
        m: [done["runs"][key_of(m, s)] for s in args.seeds if key_of(m, s) in done["runs"]]
        for m in args.methods
    }
    random_init = [r["random"] for r in results.get("simclr", [])]
    header = "| encoder | seeds | kNN k=200 | kNN k=20 | linear probe | eff. rank (features) | eff. rank (head) | train min / seed |"
    lines = [
        "# Learning from labels on Fashion-MNIST: SupCon, cross-entropy, SimCLR, Hydra",
        "",
        *(f"Command: `{c}`" for c in done["commands"]),
        "",
        f"{time.strftime('%Y-%m-%d')}; torch {torch.__version__}; {platform.machine()} CPU shared "
        f"with other jobs, {args.jobs} run(s) at a time with {args.threads} torch thread(s) each "
        f"(pinned); mean ± sample std over seeds {args.seeds}; numbers are the final epoch's, on "
        "the held-out official test split (10,000 images).",
        "",
        f"Budget (the same for every method): {args.epochs} epochs on a fixed stratified subset of "
        f"{args.train_size} training images, batch {args.batch}, small-cnn (pool 2, 512-d features) + "
        f"2-layer head (128-d), two small-gray views, AdamW lr {args.lr}, τ = {args.temperature} "
        f"for every contrastive loss (Hydra: gate scale 1/τ, arbitrary pairs, basic gates, "
        f"L = (L_ins + L_dis)/2, encoder detached from L_dis for {args.hydra_warmup} warm-up "
        "epoch(s)); cross-entropy = a linear classifier on the head, trained end to end. kNN "
        "(weighted, cosine, τ=0.1) and linear probe (standardised features, logistic regression, "
        "C chosen on a split of the train subset) on frozen backbone features, trained on the "
        "same train subset. Effective rank (Roy & Vetterli) of the centred test features / head "
        "outputs (max 512 / 128).",
        "",
        header,
        "|---|---|---|---|---|---|---|---|",
        "| raw pixels (no training) | – | "
        + " | ".join(f"{done['raw'][c]:.4f}" for c in COLUMNS)
        + f" | {done['raw']['rank']:.1f} | – | – |",
    ]
    if random_init:
        lines.append(
            f"| random-init small-cnn (no training) | {len(random_init)} | "
            + " | ".join(cell([r[c] for r in random_init]) for c in COLUMNS)
            + f" | {cell([r['rank'] for r in random_init], 1)} | "
            f"{cell([r['rank_head'] for r in random_init], 1)} | – |"
        )
    for method, runs in results.items():
        if not runs:
            continue
        trained = [r["trained"] for r in runs]
        lines.append(
            f"| {NAMES.get(method, method)} | {len(runs)} | "
            + " | ".join(cell([t[c] for t in trained]) for c in COLUMNS)
            + f" | {cell([t['rank'] for t in trained], 1)} | {cell([t['rank_head'] for t in trained], 1)}"
            + f" | {statistics.median(t['minutes'] for t in trained):.1f} |"
        )
    ranks = {
        m: (
            statistics.mean(r["trained"]["rank"] for r in runs),
            statistics.mean(r["trained"]["rank_head"] for r in runs),
        )
        for m, runs in results.items()
        if runs
    }
    if "hydra" in ranks:
        lines += [
            "",
            "Effective rank, Hydra minus (features, head): "
            + "; ".join(
                f"{NAMES[m]} {ranks['hydra'][0] - r[0]:+.1f}, {ranks['hydra'][1] - r[1]:+.1f}"
                for m, r in ranks.items()
                if m != "hydra"
            )
            + " (means over seeds; higher = less dimensional collapse).",
        ]
    ce_runs = results.get("ce", [])
    if ce_runs:
        lines += [
            "",
            "The cross-entropy model's own classifier (on the head) reaches "
            f"{cell([r['trained']['classifier'] for r in ce_runs])} test accuracy.",
        ]
    numbers = readout_numbers(done, key_of)
    if numbers:
        lines += [
            "",
            "## Hydra's class-relationship read-out",
            "",
            "Spearman ρ between the gates' relatedness and the symmetrised test confusion of the "
            "cross-entropy model of the same seed (45 class pairs), and the group AUC (footwear "
            "and upper-body pairs rated above the others; 0.5 = chance, 1 = perfect).",
            "",
            "| statistic | ρ (trained gates) | ρ (untrained gates) | group AUC (trained) | group AUC (untrained) |",
            "|---|---|---|---|---|",
        ]
        for statistic in RELATEDNESS:
            n = numbers[statistic]
            lines.append(
                f"| {statistic} | {cell(n['rho_trained'], 3)} | {cell(n['rho_untrained'], 3)} | "
                f"{cell(n['auc_trained'], 3)} | {cell(n['auc_untrained'], 3)} |"
            )
        lines.append(
            f"| (reference: the confusion matrix itself) | 1 | – | "
            f"{cell(numbers['confusion']['auc_trained'], 3)} | – |"
        )
        hydra_runs = [r for r in results.get("hydra", []) if "relatedness" in r]
        mean = np.mean([r["relatedness"]["active"] for r in hydra_runs], axis=0)
        lines += [
            "",
            "Mean relatedness `active` (fraction of open gate dimensions of g(a, b)) over the seeds:",
            "",
            "| | " + " | ".join(SHORT) + " |",
            "|---|" + "---|" * len(SHORT),
            *(
                f"| {SHORT[a]} | " + " | ".join(f"{mean[a, b]:.2f}" for b in range(10)) + " |"
                for a in range(10)
            ),
        ]
        groups = {
            "footwear": list(itertools.combinations(FOOTWEAR, 2)),
            "upper body": list(itertools.combinations(UPPER_BODY, 2)),
        }
        inside = {pair for pairs in groups.values() for pair in pairs}
        others = [(a, b) for a, b in itertools.combinations(range(10), 2) if (a, b) not in inside]
        summary = {
            name: float(np.mean([mean[a, b] for a, b in pairs])) for name, pairs in groups.items()
        }
        summary["every other pair"] = float(np.mean([mean[a, b] for a, b in others]))
        lines += [
            "",
            "Mean of the off-diagonal entries above: "
            + ", ".join(f"{name} {value:.3f}" for name, value in summary.items())
            + ".",
        ]
        plot = plot_relatedness(
            mean,
            args.results / "labels_relatedness.png",
            SHORT,
            title=f"Hydra gates: open fraction of g(a, b), mean of {len(hydra_runs)} seed(s)",
        )
        lines += ["", f"Plot: `{plot.name}` next to this file."]
    path = args.results / "labels.md"
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


def write(path: Path, content: dict) -> None:
    """Through a temporary file and a rename, so an interrupted run never truncates the store."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(content, indent=1, sort_keys=True))
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-size", type=int, default=10_000)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(NAMES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--hydra-warmup", type=int, default=1, help="epochs")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once (processes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where labels.md/.json go")
    parser.add_argument("overrides", nargs="*", help="config overrides for every method")
    args = parser.parse_args()

    store = args.results / "labels.json"
    done = json.loads(store.read_text()) if store.exists() else {"runs": {}, "commands": []}
    command = f"python {' '.join(shlex.quote(a) for a in sys.argv)}"
    if command not in done["commands"]:
        done["commands"].append(command)
    done["seeds"] = args.seeds
    settings = {m: settings_for(m, args) for m in args.methods}

    def key_of(method: str, seed: int) -> str:
        return json.dumps(
            [method, settings_for(method, args), seed, args.train_size], sort_keys=True
        )

    tasks = [(m, s) for s in args.seeds for m in args.methods]
    todo = [(m, s) for m, s in tasks if key_of(m, s) not in done["runs"]]
    print(f"{len(tasks) - len(todo)} of {len(tasks)} runs already stored; training {len(todo)}")

    torch.set_num_threads(args.threads)
    data = subset(ck.load_data("fashion-mnist", seed=0), args.train_size)
    if "raw" not in done or done.get("raw_size") != args.train_size:
        raw_train, raw_test = data.x_train.flatten(1), data.x_test.flatten(1)
        done["raw"] = scores(raw_train, raw_test, data) | {
            "rank": spectrum_summary(raw_test.numpy())["effective_rank"]
        }
        done["raw_size"] = args.train_size
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = {
            pool.submit(run, m, settings[m], s, args.threads, args.train_size): key_of(m, s)
            for m, s in todo
        }
        for future in as_completed(futures):
            done["runs"][futures[future]] = future.result()
            write(store, done)
            write_table(args, done, key_of)
    write(store, done)
    write_table(args, done, key_of)


if __name__ == "__main__":
    main()
