"""The HTML report of a run: reads the run directory (config, status, metrics, embeddings,
results, score histograms) and, when it can, the trained model and its data; measures every
diagnostic of :mod:`contrastkit.diagnostics`; and writes one self-contained page whose top says
whether the run is healthy (:mod:`contrastkit.diagnostics.health`)."""

from __future__ import annotations

import contextlib
import csv
import html
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from threadpoolctl import threadpool_limits
from torch import nn

from contrastkit.diagnostics import (
    available_map_methods,
    collapse_std,
    covariance_spectrum,
    embedding_map,
    frechet_bootstrap,
    frechet_distance,
    hardness_statistics,
    modality_gap,
    nearest_neighbours,
    neighbour_label_agreement,
    probe_calibration,
    score_statistics,
    spectrum_summary,
    sphere_geometry,
    summarize_scores,
    temperature_sweep,
)
from contrastkit.diagnostics._inputs import subsample
from contrastkit.diagnostics.health import THRESHOLD_TABLE, health_checks, overall
from contrastkit.diagnostics.scores import SCORE_KEYS
from contrastkit.errors import ContrastkitError
from contrastkit.eval import knn_accuracy
from contrastkit.functional.pairs import Pairs
from contrastkit.report import figures
from contrastkit.report.html import Figure, Section, render
from contrastkit.train.rundir import RunDir, write_text

__all__ = ["REPORT_NAME", "build_report", "write_report"]

#: File name of the report inside a run directory.
REPORT_NAME = "report.html"

# sizes that keep a report to seconds on a CPU (every subsample is drawn under the report's seed)
VIEW_SAMPLES = 512  # held-out images whose two views are embedded by the model
LAYER_SAMPLES = 2000  # test rows whose per-layer features are measured
TSNE_POINTS = 1000
BASELINE_TRAIN, BASELINE_TEST = 20000, 2000  # rows of the raw-pixel kNN baseline
CALIBRATION_TRAIN = 10000
NEIGHBOUR_QUERIES, NEIGHBOURS = 8, 8
CHUNK = 256  # images per forward pass of the model


@dataclass
class _Probe:
    """What the trained model says about held-out data."""

    layers: dict[str, np.ndarray]  # per-layer features of test rows
    views: tuple[torch.Tensor, torch.Tensor]  # projector outputs of two views [n, D] each


def write_report(
    run_dir: str | Path,
    *,
    method: nn.Module | None = None,
    data: Any | None = None,
    model_reason: str | None = None,
    sections: list[Section] | None = None,
    out: str | Path | None = None,
    seed: int = 0,
    map_methods: list[str] | None = None,
) -> Path:
    """Write the report of ``run_dir`` to ``out`` (default ``RUN_DIR/report.html``) through a
    temporary file and a rename; returns its path. ``method``/``data`` are the trained model and
    its data (the sections that need them say ``model_reason`` when they are not given);
    ``sections`` are the task's own, placed after the evaluation. ``map_methods`` defaults to
    every installed 2-D map method (PCA, t-SNE, UMAP)."""
    page = build_report(
        run_dir,
        method=method,
        data=data,
        model_reason=model_reason,
        sections=sections,
        seed=seed,
        map_methods=map_methods,
    )
    path = Path(out) if out is not None else Path(run_dir) / REPORT_NAME
    if path.suffix.lower() not in (".html", ".htm"):
        raise ContrastkitError(f"The report path {path} must end in .html.")
    write_text(path, page)
    return path


def build_report(
    run_dir: str | Path,
    *,
    method: nn.Module | None = None,
    data: Any | None = None,
    model_reason: str | None = None,
    sections: list[Section] | None = None,
    seed: int = 0,
    map_methods: list[str] | None = None,
) -> str:
    """The report of ``run_dir`` as an HTML string (see :func:`write_report`)."""
    run = RunDir(run_dir)
    if not run.config_path.is_file():
        raise ContrastkitError(
            f"{run.root} is not a contrastkit run directory (no config.yaml); pass a directory "
            "made by `contrastkit fit`."
        )
    config_text = run.config_path.read_text()
    config = _safe_yaml(config_text)
    status = _read_json(run.status_path)
    results = _read_json(run.results_path)
    metrics = _read_metrics(run.metrics_path)
    embeddings = _read_embeddings(run.embeddings_path)
    if (method is None or data is None) and model_reason is None:
        model_reason = "the trained model and its data were not given"
    threads = _get(config, "train", "num_threads")
    with _limited_threads(threads if isinstance(threads, int) and threads > 0 else None):
        report = _Report(
            run, config, status, results, metrics, embeddings, method, data, model_reason, seed
        )
        measured = report.sections(map_methods or available_map_methods())
        measured[1:1] = sections or []
    checks = health_checks(report.m)
    method_name = config.get("method", "?")
    source = _get(config, "data", "source") or "?"
    subtitle = [
        f"run directory: {run.root.resolve()}",
        f"method {method_name} on {source}; status {status.get('state', 'unknown')}; "
        f"generated {time.strftime('%Y-%m-%d %H:%M:%S')} by contrastkit",
    ]
    if model_reason:
        subtitle.append(f"Model-based sections are missing: {model_reason}")
    return render(
        title=f"contrastkit report: {run.root.name}",
        subtitle=subtitle,
        checks=checks,
        verdict=overall(checks),
        thresholds_html=_thresholds_html(),
        sections=measured,
        config_text=config_text,
    )


class _Report:
    """Measures the sections in order, filling ``m`` (the health measurements) on the way."""

    def __init__(
        self,
        run: RunDir,
        config: dict[str, Any],
        status: dict[str, Any],
        results: dict[str, Any],
        metrics: dict[str, list[tuple[int, int, float]]],
        embeddings: dict[str, np.ndarray],
        method: nn.Module | None,
        data: Any | None,
        model_reason: str | None,
        seed: int,
    ) -> None:
        self.run, self.config, self.status, self.results = run, config, status, results
        self.metrics, self.emb, self.method, self.data = metrics, embeddings, method, data
        self.model_reason = model_reason or "the trained model could not be used"
        self.seed = seed
        self.temperature = float(_get(self.config, "objective", "temperature") or 0.1)
        self.m: dict[str, Any] = {
            "state": status.get("state"),
            "message": status.get("message"),
            "temperature": self.temperature,
        }
        self.probe: _Probe | None = None
        self.probe_error: str | None = None

    # -- helpers -------------------------------------------------------------------------------
    def features(self, split: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        x = self.emb.get(f"{split}_features")
        y = self.emb.get(f"{split}_labels")
        return x, y

    def need_probe(self) -> _Probe:
        if self.probe is None:
            if self.method is None or self.data is None:
                raise _Unavailable(self.model_reason)
            if self.probe_error is not None:
                raise _Unavailable(self.probe_error)
            try:
                self.probe = _probe_model(self.method, self.data, self.seed)
            except Exception as error:  # a model without views/head: the sections say why
                self.probe_error = (
                    f"the model could not be probed ({type(error).__name__}: {error})"
                )
                raise _Unavailable(self.probe_error) from None
        return self.probe

    def sections(self, map_methods: list[str]) -> list[Section]:
        makers: list[tuple[str, str, Callable[[Section], None]]] = [
            ("evaluation", "Evaluation", self.evaluation),
            ("training", "Training curves and score statistics", self.training),
            ("geometry", "Alignment, uniformity, tolerance", self.geometry),
            ("spectrum", "Dimensional collapse: spectrum and effective rank", self.spectrum),
            ("hardness", "Hardness of negatives and the temperature", self.hardness),
            ("gap", "Contrastive gap between the two views", self.gap),
            ("shift", "Data-set shift: Fréchet distance", self.shift),
            ("calibration", "Calibration of a linear probe", self.calibration),
            ("maps", "Embedding maps", lambda s: self.maps(s, map_methods)),
            ("neighbours", "Nearest neighbours", self.neighbours),
        ]
        out = []
        for sid, title, make in makers:
            section = Section(sid, title)
            try:
                make(section)
            except _Unavailable as why:
                section.unavailable = str(why)
            except Exception as error:  # one broken measurement must not lose the report
                section.unavailable = (
                    f"this section could not be computed ({type(error).__name__}: {error})"
                )
            out.append(section)
        return out

    # -- sections ------------------------------------------------------------------------------
    def evaluation(self, s: Section) -> None:
        rows = [[k, _fmt(v)] for k, v in self.results.items()]
        x_train, y_train = self.features("train")
        x_test, y_test = self.features("test")
        knn = self.results.get("knn_accuracy")
        self.m["knn_accuracy"] = knn
        if y_test is not None and len(y_test):
            chance = float(np.bincount(y_test).max() / len(y_test))
            self.m["chance"] = chance
            rows.append(["majority-class rate (test)", _fmt(chance)])
        if not rows:
            raise _Unavailable("results.json is missing (the run has not been evaluated)")
        s.tables.append(
            ("held-out test split, frozen backbone features", ["metric", "value"], rows)
        )
        if self.data is None or y_test is None or x_train is None or not _has_labels(self.data):
            s.paragraphs.append(
                f"No raw-input baseline: it needs the run's data and labels ({self.model_reason})."
                if self.data is None
                else "No raw-input baseline: the data has no labels."
            )
            return
        k = int(_get(self.config, "eval", "knn_k") or 200)
        tau = float(_get(self.config, "eval", "knn_temperature") or 0.1)
        train_rows = subsample(len(x_train), BASELINE_TRAIN, self.seed)
        test_rows = subsample(len(x_test), BASELINE_TEST, self.seed + 1)
        raw = knn_accuracy(
            self.data.x_train[train_rows].flatten(1),
            self.data.y_train[train_rows],
            self.data.x_test[test_rows].flatten(1),
            self.data.y_test[test_rows],
            k=k,
            temperature=tau,
        )
        own = knn_accuracy(
            x_train[train_rows],
            y_train[train_rows],
            x_test[test_rows],
            y_test[test_rows],
            k=k,
            temperature=tau,
        )
        self.m["raw_knn_accuracy"], self.m["baseline_knn_accuracy"] = raw, own
        sub = len(train_rows) < len(x_train) or len(test_rows) < len(x_test)
        s.tables.append(
            (
                "baseline that needs no training (DESIGN principle 7): the same weighted kNN "
                f"(k={k}, τ={tau:g}) on raw pixels"
                + (f", on {len(train_rows)} train × {len(test_rows)} test rows" if sub else ""),
                ["features", "kNN accuracy"],
                [["raw pixels", _fmt(raw)], ["trained backbone", _fmt(own)]],
            )
        )

    def training(self, s: Section) -> None:
        losses = {}
        if "train_loss_step" in self.metrics:
            losses["per step"] = _series(self.metrics["train_loss_step"])
        if "train_loss_epoch" in self.metrics:
            losses["epoch mean"] = _series(self.metrics["train_loss_epoch"])
            epoch_losses = [v for _, _, v in self.metrics["train_loss_epoch"]]
            if len(epoch_losses) >= 2:
                self.m["loss_first"], self.m["loss_last"] = epoch_losses[0], epoch_losses[-1]
        if "loss_first" not in self.m and len(self.metrics.get("train_loss_step", [])) >= 2:
            steps = self.metrics["train_loss_step"]
            self.m["loss_first"], self.m["loss_last"] = steps[0][2], steps[-1][2]
        if not losses:
            raise _Unavailable("metrics.csv has no training loss (the run logged nothing yet)")
        panels = [("training loss", losses)]
        if "lr" in self.metrics:
            panels.append(("learning rate", {"lr": _series(self.metrics["lr"])}))
        s.figures.append(
            Figure(
                "fig-loss",
                figures.curves_figure(panels),
                "Training loss and learning rate against the optimisation step.",
            )
        )
        if all(k in self.metrics for k in SCORE_KEYS):
            score_panels = [
                (
                    "mean score (cosine)",
                    {
                        "positive": _series(self.metrics["pos_score_mean"]),
                        "negatives": _series(self.metrics["neg_score_mean"]),
                    },
                ),
                (
                    "variance",
                    {
                        "of negatives (mean over anchors)": _series(self.metrics["neg_score_var"]),
                        "of the positive (over anchors)": _series(self.metrics["pos_score_var"]),
                    },
                ),
            ]
            s.figures.append(
                Figure(
                    "fig-scores",
                    figures.curves_figure(score_panels),
                    "Positive and negative scores per training step (Zhu et al. 2021): the "
                    "positive score should rise above the negatives' mean; a negative variance "
                    "near 0 with both means near 1 is collapse.",
                )
            )
            last_epoch = max(e for e, _, _ in self.metrics["pos_score_mean"])
            gap = [
                p - n
                for (e, _, p), (_, _, n) in zip(
                    self.metrics["pos_score_mean"], self.metrics["neg_score_mean"], strict=False
                )
                if e == last_epoch
            ]
            if gap:
                self.m.setdefault("score_gap", float(np.mean(gap)))
                self.m.setdefault("score_gap_source", "last training epoch")
        else:
            s.paragraphs.append(
                "No positive/negative score statistics were logged: the method does not expose "
                "the embeddings of its training steps (method.last_step)."
            )
        joint = None
        with contextlib.suppress(_Unavailable):
            z1, z2 = self.need_probe().views
            stats = score_statistics(torch.cat([z1, z2]), Pairs.views(len(z1), 2))
            summary = {k: float(v) for k, v in summarize_scores(stats).items()}
            self.m["score_gap"] = summary["pos_score_mean"] - summary["neg_score_mean"]
            self.m["score_gap_source"] = "two views of held-out images"
            joint = (stats["positive"].numpy(), stats["negative_mean"].numpy())
            s.tables.append(
                (
                    "scores of two augmented views of held-out images, end of training",
                    ["statistic", "value"],
                    [[k, _fmt(v)] for k, v in summary.items()],
                )
            )
        from contrastkit.train.callbacks import SCORES_NAME, load_score_histograms

        hist_path = self.run.root / SCORES_NAME
        if hist_path.is_file():
            h = load_score_histograms(hist_path)
            if len(h["step"]):
                s.figures.append(
                    Figure(
                        "fig-score-histograms",
                        figures.score_histograms_figure(
                            h["step"], h["positive"], h["negative_mean"], h["edges"], joint
                        ),
                        "2-D histograms of the per-anchor positive score and mean negative score "
                        "over training (colour: number of anchors), and their joint distribution "
                        "on held-out views at the end.",
                    )
                )

    def geometry(self, s: Section) -> None:
        rows = []
        x_test, y_test = self.features("test")
        if x_test is not None:
            g = sphere_geometry(x_test, y_test, seed=self.seed)
            rows.append(
                [
                    "backbone features (test)",
                    "—",
                    _fmt(g["uniformity"]),
                    _fmt(g.get("tolerance")),
                    _fmt(collapse_std(x_test)),
                ]
            )
        try:
            z1, z2 = self.need_probe().views
        except _Unavailable as why:
            s.paragraphs.append(f"Projector outputs not measured: {why}.")
        else:
            g = sphere_geometry(z1, positives=z2, seed=self.seed)
            std = collapse_std(torch.cat([z1, z2]))
            self.m["uniformity"], self.m["collapse_std"] = g["uniformity"], std
            rows.append(
                [
                    "projector outputs (two views of held-out images)",
                    _fmt(g["alignment"]),
                    _fmt(g["uniformity"]),
                    "—",
                    _fmt(std),
                ]
            )
        if not rows:
            raise _Unavailable("embeddings.npz is missing and the model could not be used")
        s.tables.append(
            (
                "on L2-normalised embeddings; alignment E‖x−y‖² (lower: positives closer), "
                "uniformity log E exp(−2‖x−y‖²) (lower: more uniform, 0 = collapsed), tolerance "
                "= mean cosine of same-class pairs (Wang & Liu 2021), SimSiam std × √D "
                "(0 = collapsed, ≈1 = spread)",
                ["embeddings", "alignment", "uniformity", "tolerance", "std × √D"],
                rows,
            )
        )

    def spectrum(self, s: Section) -> None:
        layers: dict[str, np.ndarray] = {}
        try:
            layers = self.need_probe().layers
        except _Unavailable as why:
            s.paragraphs.append(f"Only the stored backbone features are measured: {why}.")
        x_test, _ = self.features("test")
        if x_test is not None:
            backbone = x_test[subsample(len(x_test), LAYER_SAMPLES, self.seed)]
            layers = {"backbone": backbone, **{k: v for k, v in layers.items() if k != "backbone"}}
        if not layers:
            raise _Unavailable("no embeddings to measure")
        rows, spectra = [], {}
        for name, x in layers.items():
            summary = spectrum_summary(x)
            # a centred matrix has rank ≤ N − 1: the rest of the spectrum is zero by construction
            spectra[name] = covariance_spectrum(x)[: min(len(x) - 1, x.shape[1])]
            rows.append(
                [
                    name,
                    str(summary["dim"]),
                    _fmt(summary["effective_rank"]),
                    f"{100 * summary['effective_rank_fraction']:.0f} %",
                    _fmt(summary["top_variance_fraction"]),
                ]
            )
            if name == "backbone":
                self.m["effective_rank"] = summary["effective_rank"]
                self.m["effective_rank_fraction"] = summary["effective_rank_fraction"]
        s.tables.append(
            (
                "effective rank exp(H(σ/Σσ)) of the centred embedding matrix (Roy & Vetterli "
                "2007), its share of min(N−1, D), and the share of variance on the top axis",
                ["layer", "dim", "effective rank", "share", "top-axis variance"],
                rows,
            )
        )
        s.figures.append(
            Figure(
                "fig-spectrum",
                figures.spectrum_figure(spectra),
                "Singular values of the embedding covariance, per layer (Jing et al. 2022): a "
                "sharp drop to ≈0 marks dimensional collapse.",
            )
        )

    def hardness(self, s: Section) -> None:
        z1, z2 = self.need_probe().views
        z, pairs = torch.cat([z1, z2]), Pairs.views(len(z1), 2)
        h = hardness_statistics(z, pairs, temperature=self.temperature)
        sweep = temperature_sweep(z, pairs)
        mean_entropy = float(h["normalized_entropy"].mean())
        self.m["normalized_entropy"] = mean_entropy
        s.paragraphs.append(
            "InfoNCE weighs each negative by its relative penalty exp(s/τ)/Σexp(s/τ) (Wang & Liu "
            "2021). Normalised entropy 1 means every negative weighs the same (τ too high, or the "
            "embeddings have not spread); near 0 one negative takes all the penalty (τ so low that "
            "semantically similar samples are pushed apart)."
        )
        s.tables.append(
            (
                f"two views of {len(z1)} held-out images, the run's τ = {self.temperature:g}",
                ["statistic", "mean over anchors"],
                [
                    ["normalised entropy", _fmt(mean_entropy)],
                    ["entropy (nats)", _fmt(float(h["entropy"].mean()))],
                    ["penalty on the hardest negative", _fmt(float(h["top_k_mass"].mean()))],
                ],
            )
        )
        s.figures.append(
            Figure(
                "fig-hardness",
                figures.hardness_figure(
                    h["normalized_entropy"].numpy(),
                    h["top_k_mass"].numpy(),
                    self.temperature,
                    sweep,
                ),
                "Distribution of the relative penalty over negatives at the run's temperature, and "
                "its mean across a temperature sweep on the trained model.",
            )
        )

    def gap(self, s: Section) -> None:
        z1, z2 = self.need_probe().views
        gap = modality_gap(z1, z2, paired=True, seed=self.seed)
        s.paragraphs.append(
            "Fahim et al. (2024) show that contrastive training can leave the two sides of each "
            "positive pair in separate regions of the sphere (a contrastive gap), even within one "
            "modality. Here the two sets are the projector outputs of view 1 and view 2: a "
            "centroid distance near 0 and a separability near 0.5 mean no gap."
        )
        s.tables.append(
            ("view 1 vs view 2", ["measurement", "value"], [[k, _fmt(v)] for k, v in gap.items()])
        )
        coords, _ = embedding_map(torch.cat([z1, z2]), "pca", seed=self.seed, max_points=None)
        which = np.repeat([0, 1], len(z1))
        s.figures.append(
            Figure(
                "fig-gap",
                figures.gap_figure(coords, which, ("view 1", "view 2")),
                "PCA of the two views' projector outputs, coloured by view.",
            )
        )

    def shift(self, s: Section) -> None:
        x_train, _ = self.features("train")
        x_test, _ = self.features("test")
        if x_train is None or x_test is None:
            raise _Unavailable("embeddings.npz with train and test features is missing")
        boot = frechet_bootstrap(x_train, x_test, seed=self.seed)
        rows = subsample(len(x_train), None, self.seed)
        half = np.random.default_rng(self.seed).permutation(rows)
        reference = frechet_distance(
            x_train[half[: len(half) // 2]], x_train[half[len(half) // 2 :]]
        )
        s.paragraphs.append(
            "The Fréchet distance between Gaussians fitted to two embedding sets (Heusel et al. "
            "2017) measures how far apart the sets are, e.g. labelled vs unlabelled pools "
            "(Slijepcevic et al. 2022). Compare it with the distance between two random halves of "
            "the train set, which share one distribution, and with its bootstrap spread."
        )
        s.tables.append(
            (
                "backbone features",
                ["pair of sets", "Fréchet distance", "bootstrap std"],
                [
                    ["train vs test", _fmt(boot["distance"]), _fmt(boot["bootstrap_std"])],
                    ["train half 1 vs half 2 (reference)", _fmt(reference), "—"],
                ],
            )
        )
        s.figures.append(
            Figure(
                "fig-shift",
                figures.shift_figure(boot["samples"], boot["distance"], "train vs test"),
                f"Bootstrap distribution ({len(boot['samples'])} replicates) of the train–test "
                "Fréchet distance: its spread estimates the sampling variance. Resampling with "
                "replacement repeats rows, and the distance is biased upward on fewer distinct "
                "rows, so the replicates sit above the all-rows value.",
            )
        )

    def calibration(self, s: Section) -> None:
        x_train, y_train = self.features("train")
        x_test, y_test = self.features("test")
        if x_train is None or y_train is None or x_test is None or y_test is None:
            raise _Unavailable("labelled train and test embeddings are needed")
        rows = subsample(len(x_train), CALIBRATION_TRAIN, self.seed)
        C = float(self.results.get("linear_probe_C") or 1.0)
        cal = probe_calibration(x_train[rows], y_train[rows], x_test, y_test, C=C, seed=self.seed)
        s.tables.append(
            (
                f"multinomial logistic regression (C={C:g}) on frozen backbone features"
                + (f", fit on {len(rows)} train rows" if len(rows) < len(x_train) else ""),
                ["measurement", "value"],
                [
                    ["expected calibration error (15 bins)", _fmt(cal["ece"])],
                    ["accuracy", _fmt(cal["accuracy"])],
                ],
            )
        )
        s.figures.append(
            Figure(
                "fig-calibration",
                figures.calibration_figure(cal["reliability"], cal["ece"]),
                "Reliability diagram (Guo et al. 2017): accuracy per confidence bin (bars) and "
                "the bin's mean confidence (red); both on the diagonal means calibrated.",
            )
        )

    def maps(self, s: Section, methods: list[str]) -> None:
        x_test, y_test = self.features("test")
        if x_test is None:
            raise _Unavailable("embeddings.npz is missing")
        names = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
        for method in methods:
            limit = TSNE_POINTS if method != "pca" else LAYER_SAMPLES
            coords, rows = embedding_map(x_test, method, seed=self.seed, max_points=limit)
            labels = None if y_test is None else y_test[rows]
            s.figures.append(
                Figure(
                    f"fig-map-{method}",
                    figures.map_figure(coords, labels, f"{names[method]} of test features"),
                    f"{names[method]} map of {len(rows)} test backbone features, coloured by class.",
                )
            )
        if "umap" not in methods:
            s.paragraphs.append("UMAP is drawn when the umap-learn package is installed.")

    def neighbours(self, s: Section) -> None:
        x_train, y_train = self.features("train")
        x_test, y_test = self.features("test")
        if x_train is None or x_test is None:
            raise _Unavailable("embeddings.npz is missing")
        if y_test is not None:
            agreement = neighbour_label_agreement(
                x_test[subsample(len(x_test), LAYER_SAMPLES, self.seed)],
                y_test[subsample(len(x_test), LAYER_SAMPLES, self.seed)],
            )
            s.tables.append(
                (
                    "share of each test sample's 10 nearest test neighbours (cosine) with its label",
                    ["measurement", "value"],
                    [["neighbour label agreement", _fmt(agreement)]],
                )
            )
        if self.data is None:
            raise _Unavailable(f"the images are needed for the grid ({self.model_reason})")
        queries = _pick_queries(y_test, len(x_test), self.seed)
        idx, sim = nearest_neighbours(x_test[queries], x_train, NEIGHBOURS)
        same = (
            None if y_test is None or y_train is None else y_train[idx] == y_test[queries][:, None]
        )
        images_q = self.data.x_test[queries].numpy()
        images_n = (
            self.data.x_train[idx.reshape(-1)].numpy().reshape(*idx.shape, *images_q.shape[1:])
        )
        s.figures.append(
            Figure(
                "fig-neighbours",
                figures.neighbours_figure(images_q, images_n, same, sim),
                "Test queries (left) and their nearest train neighbours by cosine similarity of "
                "backbone features; green frame: same class, red: another class.",
            )
        )


class _Unavailable(Exception):
    """A section cannot be made for a reason the reader should see (missing file, no model)."""


def _probe_model(method: nn.Module, data: Any, seed: int) -> _Probe:
    """Per-layer features of test rows, and projector outputs of two views of held-out images;
    in eval mode (BatchNorm uses its running statistics, so chunks do not change the result)."""
    device = next(method.parameters()).device
    was_training = method.training
    method.eval()
    try:
        with torch.no_grad():
            rows = torch.from_numpy(subsample(len(data.x_test), LAYER_SAMPLES, seed))
            chunks = [
                _layer_features(method, chunk.to(device))
                for chunk in data.x_test[rows].split(CHUNK)
            ]
            layers = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
            views_rows = torch.from_numpy(subsample(len(data.x_test), VIEW_SAMPLES, seed + 2))
            x = data.x_test[views_rows].to(device)
            make_views = getattr(method.views, "global_views", method.views)
            cuda = [device.index or 0] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(seed)
                views = make_views(x)[: 2 * len(x)]  # view-major: the first two views
            z = torch.cat(
                [
                    _head_output(method, method.backbone(v)).double().cpu()
                    for v in views.split(CHUNK)
                ]
            )
            return _Probe(layers, (z[: len(x)], z[len(x) :]))
    finally:
        method.train(was_training)


def _head_output(method: nn.Module, features: torch.Tensor) -> torch.Tensor:
    z = method.head(features)
    return z[:, 0] if z.ndim == 3 else z  # a multi-head projector: head 0


def _layer_features(method: nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Features after the backbone and after each block of the head (each ReLU and the output),
    to probe every layer (Xue et al. 2024)."""

    def keep(t: torch.Tensor) -> np.ndarray:  # a float64 copy (the head's ReLUs work in place)
        return t.detach().cpu().numpy().astype(np.float64)

    h = method.backbone(x)
    out = {"backbone": keep(h)}
    head = method.head
    if isinstance(head, nn.Sequential):
        block = 0
        for i, layer in enumerate(head):
            h = layer(h)
            if isinstance(layer, nn.ReLU) and i < len(head) - 1:
                block += 1
                out[f"head block {block}"] = keep(h)
        out["projector output"] = keep(h[:, 0] if h.ndim == 3 else h)
    else:
        out["projector output"] = keep(_head_output(method, h))
    return out


def _pick_queries(labels: np.ndarray | None, n: int, seed: int) -> np.ndarray:
    """Up to :data:`NEIGHBOUR_QUERIES` test rows, one per class when labelled."""
    order = np.random.default_rng(seed).permutation(n)
    if labels is None:
        return order[:NEIGHBOUR_QUERIES]
    picked, seen = [], set()
    for i in order:
        if labels[i] not in seen:
            picked.append(i)
            seen.add(labels[i])
        if len(picked) == NEIGHBOUR_QUERIES:
            break
    return np.array(sorted(picked, key=lambda i: labels[i]))


def _has_labels(data: Any) -> bool:
    return getattr(data, "y_train", None) is not None and getattr(data, "y_test", None) is not None


@contextlib.contextmanager
def _limited_threads(n: int | None) -> Iterator[None]:
    """Torch and the BLAS/OpenMP pools of numpy/scikit-learn limited to ``n`` threads."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)


def _safe_yaml(text: str) -> dict[str, Any]:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return value if isinstance(value, dict) else {}


def _get(config: dict[str, Any], section: str, key: str) -> Any:
    part = config.get(section)
    return part.get(key) if isinstance(part, dict) else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _read_metrics(path: Path) -> dict[str, list[tuple[int, int, float]]]:
    """``{column: [(epoch, step, value), ...]}`` of the finite values in ``metrics.csv``."""
    if not path.is_file():
        return {}
    out: dict[str, list[tuple[int, int, float]]] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                epoch, step = int(row.get("epoch") or 0), int(row.get("step") or 0)
            except ValueError:
                continue
            for key, text in row.items():
                if key in ("epoch", "step") or not text:
                    continue
                try:
                    value = float(text)
                except ValueError:
                    continue
                if math.isfinite(value):
                    out.setdefault(key, []).append((epoch, step, value))
    return out


def _series(points: list[tuple[int, int, float]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([p[1] for p in points]), np.array([p[2] for p in points])


def _read_embeddings(path: Path) -> dict[str, np.ndarray]:
    """The arrays of ``embeddings.npz`` that look right (2-D features, 1-D integer labels)."""
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError):
        return {}
    out = {}
    for split in ("train", "test"):
        x, y = arrays.get(f"{split}_features"), arrays.get(f"{split}_labels")
        if x is None or x.ndim != 2 or not np.isfinite(x).all():
            continue
        out[f"{split}_features"] = x
        if y is not None and y.shape == (len(x),) and np.issubdtype(y.dtype, np.integer):
            out[f"{split}_labels"] = y.astype(np.int64)
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "nan" if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


def _thresholds_html() -> str:
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row in THRESHOLD_TABLE
    )
    return (
        "<table><thead><tr><th>check</th><th>measured on</th><th>warn when</th><th>fail when</th>"
        f"</tr></thead><tbody>{rows}</tbody></table><p>The verdict is the worst status. Reference "
        "values: random-init encoders on digits give std × √D ≈ 0.03, uniformity ≈ 0, a score gap "
        "≈ 0.001 and a normalised entropy of 1.000; a 30-epoch SimCLR run gives 0.87, −2.5, 0.46 "
        "and 0.72. See contrastkit.diagnostics.health.</p>"
    )
