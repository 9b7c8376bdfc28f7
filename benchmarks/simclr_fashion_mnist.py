"""SimCLR on real data: final epoch, held-out test split, several seeds, next to baselines that
need no training (raw pixels; the same encoder at random init).

    python benchmarks/simclr_fashion_mnist.py --data fashion-mnist --epochs 3 --jobs 2 --threads 1
    python benchmarks/simclr_fashion_mnist.py --data digits --epochs 100 --jobs 2 --threads 1

Seeds run as separate processes (``--jobs`` at a time, ``--threads`` torch threads each: on a
2-core machine two 1-thread processes beat one 2-thread process). Writes
``benchmarks/results/simclr_<data>.md`` with the table and the command that produced it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from tables import command_line, seed_rows

import contrastkit as ck
from contrastkit.eval import knn_accuracy, linear_probe
from contrastkit.methods import build_method
from contrastkit.train.run import quiet_lightning

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = ("knn", "knn20", "probe")


def scores(train_features, test_features, data: ck.ImageData) -> dict[str, float]:
    """kNN (InstDisc: weighted, cosine, τ=0.1) at k=200 and k=20, and the linear probe."""
    knn = {
        k: knn_accuracy(train_features, data.y_train, test_features, data.y_test, k=k)
        for k in (200, 20)
    }
    probe = linear_probe(train_features, data.y_train, test_features, data.y_test)["accuracy"]
    return {"knn": knn[200], "knn20": knn[20], "probe": probe}


def run_seed(source: str, overrides: dict[str, object], seed: int, threads: int) -> dict[str, dict]:
    torch.set_num_threads(threads)
    quiet_lightning()
    data = ck.load_data(source, seed=0)  # one fixed split for every seed; seeds vary training only
    settings = {**overrides, "seed": seed, "train.num_threads": threads}
    config = ck.load_config("simclr", [f"{key}={value}" for key, value in settings.items()])
    torch.manual_seed(seed)
    untrained = build_method(config, channels=data.channels, image_size=data.image_size)
    random_init = scores(untrained.embed(data.x_train), untrained.embed(data.x_test), data)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = ck.fit(config, data=data, out=Path(tmp) / "run")
        minutes = (time.perf_counter() - started) / 60
    trained = scores(result.method.embed(data.x_train), result.method.embed(data.x_test), data)
    print(f"seed {seed}: {trained} in {minutes:.1f} min", flush=True)
    return {
        "random": random_init,
        "simclr": trained | {"minutes": minutes},
        "config": config.to_dict(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="seeds trained at once (processes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument(
        "overrides", nargs="*", help="config overrides, e.g. objective.temperature=0.2"
    )
    args = parser.parse_args()
    overrides: dict[str, object] = {
        "data.source": args.data,
        "train.epochs": args.epochs,
        "train.progress_bar": False,
    }
    overrides |= dict(item.split("=", 1) for item in args.overrides)

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = [
            pool.submit(run_seed, args.data, overrides, seed, args.threads) for seed in args.seeds
        ]
        torch.set_num_threads(args.threads)
        data = ck.load_data(args.data, seed=0)
        raw = scores(data.x_train.flatten(1), data.x_test.flatten(1), data)
        runs = [f.result() for f in futures]
    rows = {
        "raw pixels (no training)": [raw],
        "random-init encoder (no training)": [r["random"] for r in runs],
        f"SimCLR, {args.epochs} epochs": [r["simclr"] for r in runs],
    }
    write_table(args, runs[0]["config"], rows)


def write_table(
    args: argparse.Namespace, config: dict, rows: dict[str, list[dict[str, float]]]
) -> None:
    model, optim, train = config["model"], config["optim"], config["train"]
    lines = [
        f"# SimCLR on {args.data}: final-epoch test accuracy",
        "",
        command_line(),
        "",
        f"{time.strftime('%Y-%m-%d')}; torch {torch.__version__}; {platform.machine()} CPU, {args.jobs} seed "
        f"process(es) at a time with {args.threads} torch thread(s) each (pinned); seeds {args.seeds}, "
        "mean ± sample std over seeds; the test split is held out and fixed, and the numbers are the final epoch's.",
        "",
        f"Recipe `configs/simclr.yaml` with: backbone {model['backbone']} {model['backbone_options'] or ''}, "
        f"views {config['views']['recipe']} {config['views']['options'] or ''}, τ={config['objective']['temperature']}, "
        f"{optim['name']} lr={optim['lr']}, batch {train['batch_size']}, {train['epochs']} epochs. "
        "kNN: weighted vote, cosine, τ=0.1 (InstDisc protocol), k=200 and k=20. Linear probe: standardised "
        "frozen pre-projection features + logistic regression, C chosen on a split of the train set.",
        "",
        "| encoder | kNN k=200 | kNN k=20 | linear probe | train minutes / seed |",
        "|---|---|---|---|---|",
    ]
    lines += seed_rows(rows, COLUMNS, digits=4)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"simclr_{args.data}.md"
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
