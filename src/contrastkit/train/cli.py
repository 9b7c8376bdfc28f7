"""``contrastkit`` command line: fit, eval, embed, report, diagnose.

User errors print one sentence to stderr and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from contrastkit.errors import ContrastkitError

if TYPE_CHECKING:
    from contrastkit.config import Config
    from contrastkit.data import ImageData

USAGE_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    # overrides may come before, between or after the options (argparse alone takes one run
    # of positionals, so `fit a=1 --data digits b=2` would leave `b=2` unparsed)
    args, extra = parser.parse_known_args(argv)
    unknown = [e for e in extra if e.startswith("-") or "=" not in e or args.run is not _fit]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = [*args.overrides, *extra]
    try:
        return args.run(args)
    except ContrastkitError as error:
        print(f"contrastkit: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("contrastkit: interrupted.", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="contrastkit", description="Contrastive representation learning."
    )
    commands = parser.add_subparsers(dest="command", required=False)
    parser.set_defaults(
        run=_fit,
        config="simclr",
        data=None,
        epochs=None,
        batch_size=None,
        seed=None,
        threads=None,
        out=None,
        resume=None,
        no_progress=False,
        overrides=[],
        json=False,
        labels=False,
    )

    fit = commands.add_parser("fit", help="train a recipe into a run directory, then evaluate it")
    fit.add_argument(
        "--config", default="simclr", help="bundled recipe name or YAML path (default: simclr)"
    )
    fit.add_argument(
        "--data",
        help="data source: digits, fashion-mnist, folder:PATH, npz:PATH, torchvision:cifar10 …",
    )
    fit.add_argument("--epochs", type=int)
    fit.add_argument("--batch-size", type=int)
    fit.add_argument("--seed", type=int)
    fit.add_argument(
        "--threads", type=int, help="CPU threads for torch (pin to 1–2 on small machines)"
    )
    fit.add_argument("--out", help="run directory to create (default: runs/METHOD-DATA-TIME)")
    fit.add_argument(
        "--resume", metavar="RUN", help="continue an unfinished run from its last checkpoint"
    )
    fit.add_argument("--no-progress", action="store_true", help="no progress bar")
    fit.add_argument(
        "--labels",
        action="store_true",
        help="train with the data's class labels: for ntxent/infonce/dcl recipes the positives "
        "become every sample of the same class (simclr turns into SupCon's L_out); label "
        "objectives (supcon, supcon-simclr, ce, hydra; these need labels with or without the "
        "flag) take num_classes from the data. Fails for unlabelled data and for objectives "
        "that cannot use labels",
    )
    fit.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="config overrides, e.g. optim.lr=0.01",
    )
    fit.set_defaults(run=_fit)

    evaluate = commands.add_parser("eval", help="re-evaluate a finished run (kNN, linear probe)")
    evaluate.add_argument("run_dir", metavar="RUN")
    evaluate.add_argument("--json", action="store_true", help="print the results as JSON")
    evaluate.set_defaults(run=_eval)

    embed = commands.add_parser(
        "embed", help="write frozen features of a data source to an .npz file"
    )
    embed.add_argument("run_dir", metavar="RUN")
    embed.add_argument(
        "--data", required=True, help="data source to embed (same image size/channels as training)"
    )
    embed.add_argument(
        "--out", required=True, help="output .npz (arrays train_features, test_features, labels)"
    )
    embed.set_defaults(run=_embed)

    report = commands.add_parser(
        "report", help="write a run's HTML report (health summary, curves, diagnostics)"
    )
    report.add_argument("run_dir", metavar="RUN")
    report.add_argument("--out", help="HTML file to write (default: RUN/report.html)")
    report.set_defaults(run=_report)

    diagnose = commands.add_parser(
        "diagnose", help="print the diagnostics of an embeddings .npz as a table"
    )
    diagnose.add_argument(
        "embeddings",
        metavar="EMBEDDINGS.npz",
        help="features [N, D] (test_features, features or embeddings; train_features too for a "
        "probe) and optional labels",
    )
    diagnose.add_argument(
        "--other", metavar="B.npz", help="a second set to compare with (gap, Fréchet distance)"
    )
    diagnose.add_argument(
        "--paired", action="store_true", help="row i of both sets belong together (two views)"
    )
    diagnose.add_argument(
        "--temperature", type=float, default=0.1, help="τ of the hardness measurement"
    )
    diagnose.add_argument("--json", action="store_true", help="print the numbers as JSON")
    diagnose.set_defaults(run=_diagnose)
    return parser


def _fit(args: argparse.Namespace) -> int:
    from contrastkit.config import load_config
    from contrastkit.train.run import fit, quiet_lightning

    quiet_lightning()
    if args.resume:
        extra = [args.data, args.epochs, args.batch_size, args.seed, args.out, *args.overrides]
        if args.labels or any(v is not None and v != [] for v in extra):
            raise ContrastkitError(
                "--resume continues a run with its saved config; drop the other options."
            )
        result = fit(resume=args.resume)
    else:
        flags = {
            "data.source": args.data,
            "train.epochs": args.epochs,
            "train.batch_size": args.batch_size,
            "seed": args.seed,
            "train.num_threads": args.threads,
        }
        overrides = [f"{k}={v}" for k, v in flags.items() if v is not None] + list(args.overrides)
        if args.no_progress:
            overrides.append("train.progress_bar=false")
        config = load_config(args.config, overrides)
        config, data = _labelled(config, args.labels)
        result = fit(config, data=data, out=args.out)
    if result.metrics:  # other ranks of a multi-process run have nothing to report
        _print_results(result.run_dir, result.metrics)
    return 0


def _labelled(config: Config, use_labels: bool) -> tuple[Config, ImageData | None]:
    """``(config, data)`` for ``fit``: with ``--labels``, or for a recipe that needs labels, the
    data is loaded here and must be labelled (before a run directory exists); ``--labels``
    turns the recipe supervised (:func:`~contrastkit.methods.registry.with_labels`). ``data`` is
    ``None`` when ``fit`` should load it itself."""
    from contrastkit.methods.registry import METHODS, needs_labels, with_labels
    from contrastkit.tasks.image import load_source

    if config.method not in METHODS:  # other tasks read their own targets
        if use_labels:
            raise ContrastkitError(
                f"--labels applies to image methods; {config.method} recipes set their own "
                "targets, so drop the flag."
            )
        return config, None
    if not (use_labels or needs_labels(config)):
        return config, None
    data = load_source(config)
    if not data.has_labels:
        needed = "--labels needs" if use_labels else f"Recipe method {config.method!r} needs"
        raise ContrastkitError(
            f"{needed} labelled data, but {config.data.source} has no labels; use a labelled "
            "source (e.g. fashion-mnist, or an npz with y) or a self-supervised recipe."
        )
    config = with_labels(config, data.num_classes, positives=use_labels)
    # handing the loaded data to fit avoids a second load, unless fit would then record it as
    # in-memory data (a source whose name differs from its spec)
    return config, (data if data.name == config.data.source else None)


def _eval(args: argparse.Namespace) -> int:
    from contrastkit.train.run import evaluate_into, load_run

    run, task, model, data = load_run(args.run_dir)
    results = json.loads(run.results_path.read_text()) if run.results_path.is_file() else {}
    results.update(evaluate_into(run, task, model, data))
    run.save_results(results)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print_results(run.root, results)
    return 0


def _embed(args: argparse.Namespace) -> int:
    from contrastkit.train.run import embed_run
    from contrastkit.train.rundir import save_npz

    out = Path(args.out)
    if out.suffix != ".npz":
        raise ContrastkitError(f"--out {out} must end in .npz.")
    arrays = embed_run(args.run_dir, args.data)
    save_npz(out, **arrays)
    print(f"wrote {out}: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items()))
    return 0


def _report(args: argparse.Namespace) -> int:
    from contrastkit.report import write_report
    from contrastkit.train.run import load_run, quiet_lightning

    quiet_lightning()
    model = data = reason = None
    sections: list = []
    try:
        _, task, model, data = load_run(args.run_dir)
        sections = task.report_sections(model, data)
    except ContrastkitError as error:  # the report is still written, without the model's parts
        reason = str(error).rstrip(".")
    except Exception as error:  # a config from another version, a changed architecture
        reason = f"the run could not be loaded ({type(error).__name__}: {error})"
    path = write_report(
        args.run_dir, method=model, data=data, model_reason=reason, sections=sections, out=args.out
    )
    print(f"wrote {path}")
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from contrastkit.diagnostics.summary import diagnose, load_embeddings

    main_set = load_embeddings(args.embeddings)
    other = None if args.other is None else load_embeddings(args.other)["features"]
    numbers = diagnose(
        main_set["features"],
        main_set.get("labels"),
        other=other,
        paired=args.paired,
        train_features=main_set.get("train_features"),
        train_labels=main_set.get("train_labels"),
        temperature=args.temperature,
    )
    if args.json:
        print(json.dumps(numbers, indent=2))
        return 0
    print(f"{'measurement':<32} {'value':>12}")
    for key, value in numbers.items():
        shown = str(int(value)) if key in ("n", "dim") else f"{value:.4f}"
        print(f"{key:<32} {shown:>12}")
    return 0


def _print_results(run_dir: Path, metrics: dict) -> None:
    print(f"\nrun directory: {run_dir}")
    for key, value in metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) else value
        print(f"  {key:<24} {shown}")


if __name__ == "__main__":
    sys.exit(main())
