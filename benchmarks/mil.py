"""Multiple-instance learning on bags of real Fashion-MNIST images: SC-MIL and INS next to
attention-MIL with cross-entropy and baselines that need no training.

    python benchmarks/mil.py --epochs 12 --jobs 1 --threads 1

A bag is positive when it holds an image of the target class (default: pullover). The bags are
drawn once (seed 0; train bags from the train split, test bags from the held-out test split);
the seeds vary training only. Every method trains the same small CNN from scratch with the same
augmentation, optimiser and epochs, and is scored after its final epoch. Writes
``benchmarks/results/mil.md``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tables import command_line, seed_rows

import contrastkit as ck
from contrastkit.mil import (
    INSModel,
    MILModel,
    SCMILLoss,
    fit_ins,
    fit_mil,
    image_bags,
    mil_metrics,
    predict_ins,
    predict_mil,
)
from contrastkit.nn.backbones import SmallCNN
from contrastkit.views.image import build_augmentation

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = ("bag_auc", "instance_accuracy", "instance_balanced_accuracy", "instance_auc")


def make_data(args: argparse.Namespace):
    data = ck.load_data(args.data, seed=0)
    target = (
        data.classes.index(args.target) if args.target in (data.classes or ()) else int(args.target)
    )
    train, test = image_bags(
        data,
        target,
        n_train_bags=args.train_bags,
        n_test_bags=args.test_bags,
        bag_size=tuple(args.bag_size) if len(args.bag_size) == 2 else args.bag_size[0],
        positive_fraction=args.positive_fraction,
        positive_bag_rate=args.positive_bag_rate,
        seed=0,
    )
    return data, train, test


@torch.no_grad()
def pooled_probe(features_of, train, test) -> dict[str, float]:
    """Mean-pooled frozen features + logistic regression on bag labels; instances are scored by
    the same classifier as bags of one."""

    def bag_features(bags):
        f = features_of(bags.images[bags.instance_index])
        pooled = torch.zeros(bags.n_bags, f.shape[1]).index_add(0, bags.bag_index, f)
        return f.numpy(), (pooled / bags.sizes[:, None]).numpy()

    _, train_bags = bag_features(train)
    test_instances, test_bags = bag_features(test)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    model.fit(train_bags, train.bag_labels.numpy())
    return mil_metrics(
        model.predict_proba(test_bags)[:, 1],
        test.bag_labels,
        model.predict_proba(test_instances)[:, 1],
        test.instance_labels,
    )


def encoder(args: argparse.Namespace, channels: int, size: int) -> SmallCNN:
    return SmallCNN(channels, size, width=args.width)


def run_seed(args: argparse.Namespace, seed: int) -> dict[str, dict[str, float]]:
    torch.set_num_threads(args.threads)
    data, train, test = make_data(args)
    channels, size = data.channels, data.image_size
    augment = build_augmentation("small-gray", image_size=size, channels=channels)
    weak = build_augmentation(
        "small-gray", image_size=size, channels=channels, crop_scale=(0.8, 1.0), jitter_strength=0
    )
    out: dict[str, dict[str, float]] = {}

    torch.manual_seed(seed)
    random_encoder = encoder(args, channels, size).eval()
    out["random"] = pooled_probe(random_encoder, train, test)

    common = dict(epochs=args.epochs, batch_bags=args.batch_bags, lr=args.lr, seed=seed)
    for name, loss, views in (
        ("abmil", SCMILLoss(schedule="ce"), 1),
        ("scmil", SCMILLoss(args.temperature, schedule=args.schedule), 2),
    ):
        torch.manual_seed(seed)
        started = time.perf_counter()
        f = encoder(args, channels, size)
        model = fit_mil(
            MILModel(f, f.out_dim), train, loss=loss, n_views=views, augment=augment, **common
        )
        minutes = (time.perf_counter() - started) / 60
        bag_scores, instance_scores = predict_mil(model, test)
        out[name] = mil_metrics(
            bag_scores, test.bag_labels, instance_scores, test.instance_labels
        ) | {"minutes": minutes}
        print(f"seed {seed} {name}: {out[name]}", flush=True)

    torch.manual_seed(seed)
    started = time.perf_counter()
    f = encoder(args, channels, size)
    ins = INSModel(f, f.out_dim, queue_size=args.queue, low_dim=64)
    fit_ins(
        ins,
        train,
        epochs=args.epochs,
        warmup_epochs=1,
        batch_size=args.batch_instances,
        batch_bags=args.batch_bags,
        lr=args.lr,
        weak_augment=weak,
        strong_augment=augment,
        seed=seed,
    )
    minutes = (time.perf_counter() - started) / 60
    scores = predict_ins(ins, test)
    for key, bag in (("ins", "bag_mean"), ("ins_max", "bag_max")):
        out[key] = mil_metrics(
            scores[bag], test.bag_labels, scores["instance"], test.instance_labels
        ) | {"minutes": minutes}
    print(f"seed {seed} ins: {out['ins']}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--target", default="Pullover", help="class name or index")
    parser.add_argument("--train-bags", type=int, default=300)
    parser.add_argument("--test-bags", type=int, default=300)
    parser.add_argument("--bag-size", type=int, nargs="+", default=[10])
    parser.add_argument("--positive-fraction", type=float, default=0.2)
    parser.add_argument("--positive-bag-rate", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-bags", type=int, default=16)
    parser.add_argument("--batch-instances", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--temperature", type=float, default=0.1)
    parser.add_argument("--schedule", default="parabolic")
    parser.add_argument("--queue", type=int, default=1024)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained at once (processes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = [pool.submit(run_seed, args, seed) for seed in args.seeds]
        data, train, test = make_data(args)
        raw = pooled_probe(lambda x: x.flatten(1), train, test)
        runs = [f.result() for f in futures]
    rows = {
        "raw pixels, mean-pooled + logistic regression (no training)": [raw],
        "random-init CNN, mean-pooled + logistic regression (no training)": [
            r["random"] for r in runs
        ],
        "attention-MIL, cross-entropy (plain baseline)": [r["abmil"] for r in runs],
        f"SC-MIL (SupCon on bags, {args.schedule} α, τ={args.temperature})": [
            r["scmil"] for r in runs
        ],
        "INS (bag score = mean instance probability)": [r["ins"] for r in runs],
        "INS (bag score = max instance probability)": [r["ins_max"] for r in runs],
    }
    write_table(args, data, train, test, rows, (time.perf_counter() - started) / 60)


def write_table(args, data, train, test, rows, total_minutes: float) -> None:
    lines = [
        f"# MIL on bags of {args.data} images: final-epoch held-out test",
        "",
        command_line(),
        "",
        f"{time.strftime('%Y-%m-%d')}; torch {torch.__version__}; {platform.machine()} CPU, "
        f"{args.jobs} seed process(es) at a time with {args.threads} torch thread(s) each (pinned, "
        f"on a shared machine); seeds {args.seeds}, mean ± sample std over seeds; total wall time "
        f"{total_minutes:.1f} min.",
        "",
        f"Bags: positive when they hold a '{args.target}' image; bag size {args.bag_size}, witness "
        f"rate {args.positive_fraction} (positive fraction of a positive bag's instances), "
        f"{args.positive_bag_rate:.0%} positive bags. Train: {train!r} from the train split; "
        f"test: {test!r} from the held-out test split; drawn once (seed 0).",
        "",
        f"Training: SmallCNN (width {args.width}) from scratch, AdamW lr {args.lr}, {args.epochs} "
        f"epochs, augmentation small-gray (INS: weak = crop 0.8–1 + flip for queries, small-gray "
        f"for keys); bag models: gated attention pooling, batches of {args.batch_bags} bags; "
        f"SC-MIL: 2 augmented views per bag, projection 64-d; INS: batches of "
        f"{args.batch_instances} instances, 1 warm-up epoch (MoCo + bag loss), queue "
        f"{args.queue}, projection 64-d, τ 0.07, loss weight 0.5, φ 0.95→0.8. Instance scores of "
        "the bag models: the bag classifier on each instance as a bag of one. Instance accuracy "
        "thresholds the positive-class probability at 0.5 (most instances are negative, so also "
        "see balanced accuracy and AUC).",
        "",
        "| method | bag AUC | instance accuracy | instance balanced accuracy | instance AUC "
        "| train minutes / seed |",
        "|---|---|---|---|---|---|",
    ]
    lines += seed_rows(rows, COLUMNS, digits=3)
    collapsed = [
        name
        for name, runs in rows.items()
        if all(r["instance_balanced_accuracy"] == 0.5 for r in runs)
    ]
    if collapsed:
        lines += [
            "",
            "Balanced accuracy exactly 0.5 (every test instance predicted negative at the 0.5 "
            f"threshold; instance accuracy = share of negatives): {'; '.join(collapsed)}. Their "
            "instance AUC shows the ranking the scores still carry.",
        ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "mil.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
