"""Two-tower benchmarks (issue #8), each a committed table over seeds, final step, test split:

    python benchmarks/two_towers.py code-search --seeds 0 1 2 --threads 1
    python benchmarks/two_towers.py sentences --seeds 0 1 2 --threads 1
    python benchmarks/two_towers.py clip-gap --seeds 0 1 2 --threads 1

- ``code-search``: MiniLM zero-shot vs CLIP-style fine-tuning vs CoCoSoDa on the standard-library
  code-search corpus (test modules): query→code MRR and Recall@k, and code→query MRR.
- ``sentences``: SimCSE vs WhitenedCSE fine-tuning of MiniLM on the docstring summaries, against
  the untuned model: WordSim-353, SimLex-999 and Lee-document correlations.
- ``clip-gap``: CLIP with and without the contrastive-gap terms (CUA, CUAXU) on Fashion-MNIST
  images with caption templates: zero-shot accuracy and the gap measurements.

Runs are stored in ``results/two_towers_<table>.json`` (keyed by recipe, overrides and seed), so
an interrupted benchmark resumes (and the tables can run at once); each table is rewritten from its
store after every run.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from objectives import write  # the same resumable store
from tables import mean_std as cell

import contrastkit as ck
from contrastkit.multimodal import fit_evaluate

RESULTS = Path(__file__).resolve().parent / "results"

# table → rows: (label, recipe, overrides); "steps=0" rows are the no-training baselines
TABLES: dict[str, list[tuple[str, str, dict[str, object]]]] = {
    "code-search": [
        ("MiniLM zero-shot (no training)", "clip-code", {"towers.steps": 0}),
        ("CLIP-style fine-tuning", "clip-code", {}),
        ("CoCoSoDa", "cocosoda", {}),
    ],
    "sentences": [
        ("MiniLM untuned (no training)", "simcse", {"towers.steps": 0}),
        ("SimCSE", "simcse", {}),
        ("WhitenedCSE", "whitenedcse", {}),
    ],
    "clip-gap": [
        ("untrained projections (no training)", "clip", {"towers.steps": 0}),
        ("CLIP", "clip", {}),
        (
            "CLIP + uniformity + alignment (CUA)",
            "clip",
            {"objective.options.uniformity": True, "objective.options.alignment": True},
        ),
        ("CLIP + CUA + cross-uniformity (CUAXU)", "clip-gap", {}),
    ],
}
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "code-search": [
        ("query→code MRR", "a_to_b/mrr"),
        ("R@1", "a_to_b/recall@1"),
        ("R@5", "a_to_b/recall@5"),
        ("R@10", "a_to_b/recall@10"),
        ("code→query MRR", "b_to_a/mrr"),
        ("gap: centroid distance", "gap/centroid_distance"),
    ],
    "sentences": [
        ("Lee Spearman", "lee/spearman"),
        ("Lee Pearson", "lee/pearson"),
        ("WordSim-353 Spearman", "wordsim353/spearman"),
        ("SimLex-999 Spearman", "simlex999/spearman"),
    ],
    "clip-gap": [
        ("zero-shot acc.", "zero_shot_accuracy"),
        ("centroid distance", "gap/centroid_distance"),
        ("linear separability", "gap/linear_separability"),
        ("uniformity (img / text)", "gap/uniformity_a|gap/uniformity_b"),
        ("cross-uniformity", "gap/cross_uniformity"),
        ("alignment", "gap/alignment"),
    ],
}


# what each table's setting is, and what we read in it (shown under the table)
NOTES: dict[str, list[str]] = {
    "code-search": [
        "Corpus: `codesearch:stdlib` of this machine's Python 3.11 (5,082 documented functions "
        "from 324 modules; split by module, seed 0: 4,064 train / 590 valid / 428 test pairs). "
        "Query = first docstring paragraph, code = the function without its docstring. "
        "MiniLM = the bundled all-MiniLM-L6-v2, one shared tower, mean pooling; retrieval among "
        "all 428 test functions. Fine-tuning budget: 50 steps of 32 pairs (1,600 pairs, 0.4 "
        "epoch), lr 2e-5, code truncated at 96 tokens in training and 128 at evaluation. "
        "CoCoSoDa as released (τ = 0.07 × extra scale 20, queues of 1,024, m = 0.999, 10 % "
        "dynamic masking of the keys' inputs) but on MiniLM: UniXcoder does not ship offline.",
        "Result: both fine-tunings beat zero-shot MiniLM (query→code MRR 0.580 → 0.623 CLIP-style, "
        "0.613 CoCoSoDa; R@10 0.822 → 0.864 / 0.861). At this budget CoCoSoDa does not beat "
        "the plain in-batch loss (its code→query MRR is lower, 0.587 vs 0.636) and costs 2.7× "
        "the time per step (two momentum towers); its queues and momentum keys are built for "
        "long pre-training (100k steps in the paper), not a 50-step fine-tune. Both halve the "
        "centroid distance between query and code embeddings (0.38 → 0.22).",
    ],
    "sentences": [
        "Unlabelled sentences: the 4,064 docstring summaries of the code-search training modules. "
        "Tower: all-MiniLM-L6-v2 (mean pooling), 50 steps of 64 sentences at 32 tokens, lr 2e-5, "
        "τ = 0.05; the train-only Linear+tanh layer is dropped at evaluation. Lee: 1,225 "
        "document pairs (upper triangle of the 50×50 human matrix), documents read up to 256 "
        "tokens; WordSim-353 and SimLex-999: cosine of single-word embeddings.",
        "Result: neither fine-tuning moves all-MiniLM-L6-v2 beyond the spread of its seeds: Lee "
        "Spearman 0.508 untuned, 0.502 SimCSE, 0.506 WhitenedCSE; WordSim-353 and SimLex-999 "
        "gain 0.001–0.002. WhitenedCSE is at or above SimCSE on all four columns, by about one "
        "standard deviation. MiniLM was itself trained contrastively on a billion sentence "
        "pairs, so two dropout passes of a docstring are already each other's nearest "
        "neighbours: the first batches' loss is already about 0.01 and the final one about "
        "2e-4 for both objectives, which leaves little gradient. Shown for what the "
        "objectives do to a strong encoder on this corpus; the papers fine-tune BERT, which has "
        "no such head start.",
    ],
    "clip-gap": [
        "Images: Fashion-MNIST, 10,000 training images (a sample drawn with the training seed) and the 10,000 test "
        "images, frozen ImageNet EfficientNet-Lite0 features at 64×64 (cached) + a linear "
        "projection; text: a 2-layer transformer (128-d) over the MiniLM tokenizer's ids. "
        "Captions: one of 6 training templates per image over its class name; test captions and "
        "zero-shot prompts use 3 templates never seen in training. 600 steps of 64 pairs, "
        "AdamW lr 5e-4, wd 0.1, learnable logit scale from 1/0.07, clamped at 100. Gap numbers "
        "on the 10,000 test images and their captions (normalised; linear separability = "
        "logistic regression on 80 % of pairs, accuracy on the rest).",
        "Result: the gap terms do not close the gap here; they widen it (centroid distance "
        "0.26 → 0.39 (CUA) → 0.47 (CUAXU), alignment 0.64 → 0.94 → 1.31) while making each "
        "modality more uniform, and zero-shot accuracy drops slightly (0.845 → 0.840). The "
        "paper's claim is for data where every image has its own caption (MS-COCO). Here 60 "
        "caption texts serve 10,000 images (about 170 images each, 1,000 per class), so in-modal "
        "uniformity, which spreads the images of a class apart, necessarily moves them away from "
        "their shared caption: on class-template captions uniformity and alignment conflict.",
    ],
}


def key(recipe: str, overrides: dict, seed: int) -> str:
    return json.dumps([recipe, overrides, seed], sort_keys=True)


def run(recipe: str, overrides: dict, seed: int) -> dict:
    items = [f"{k}={json.dumps(v)}" for k, v in {**overrides, "seed": seed}.items()]
    config = ck.load_config(recipe, items)
    started = time.perf_counter()
    result = fit_evaluate(config)
    metrics = dict(result.metrics)
    metrics["wall_seconds"] = round(time.perf_counter() - started, 1)
    return metrics


def write_table(table: str, done: dict, seeds: list[int]) -> None:
    rows = []
    for label, recipe, overrides in TABLES[table]:
        row_seeds = [0] if overrides.get("towers.steps") == 0 else seeds
        runs = [done["runs"].get(key(recipe, overrides, s)) for s in row_seeds]
        runs = [r for r in runs if r is not None]
        if not runs:
            continue
        cells = []
        for _, column in COLUMNS[table]:
            parts = [[r[c] for r in runs if c in r] for c in column.split("|")]
            cells.append(" / ".join(cell(p) if p else "—" for p in parts))
        seconds = statistics.median(r.get("train_seconds", 0.0) for r in runs)
        rows.append(f"| {label} | `{recipe}` | {len(runs)} | {' | '.join(cells)} | {seconds:.0f} |")
    header = [name for name, _ in COLUMNS[table]]
    lines = [
        f"# Two towers: {table}",
        "",
        "Produced by:",
        "",
        *[f"    {c}" for c in done["commands"].get(table, [])],
        "",
        f"Machine: {platform.machine()}, {done.get('threads', '?')} torch thread(s) per run, "
        f"torch {torch.__version__}. Final step of every run, test split; mean ± std over the "
        "seeds shown (the no-training rows do not depend on the seed).",
        "",
        f"| method | recipe | seeds | {' | '.join(header)} | train s |",
        "|---|---|---|" + "---|" * len(header) + "---|",
        *rows,
        "",
        *[f"- {note}" for note in NOTES[table]],
        "",
    ]
    (RESULTS / f"two_towers_{table}.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", choices=sorted(TABLES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    store = RESULTS / f"two_towers_{args.table}.json"
    done = json.loads(store.read_text()) if store.exists() else {"runs": {}, "commands": {}}
    command = f"python {' '.join(shlex.quote(a) for a in sys.argv)}"
    done["threads"] = args.threads
    done["commands"].setdefault(args.table, [])
    if command not in done["commands"][args.table]:
        done["commands"][args.table].append(command)
    for label, recipe, overrides in TABLES[args.table]:
        seeds = [0] if overrides.get("towers.steps") == 0 else args.seeds
        for seed in seeds:
            k = key(recipe, overrides, seed)
            if k in done["runs"]:
                continue
            done["runs"][k] = run(recipe, overrides, seed)
            print(f"{label} seed {seed}: {done['runs'][k]}", flush=True)
            write(store, done)
            write_table(args.table, done, args.seeds)
    write(store, done)
    write_table(args.table, done, args.seeds)


if __name__ == "__main__":
    main()
