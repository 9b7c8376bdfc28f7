"""Matplotlib figures of the report, each returned as PNG bytes. Figures are made with the
object API (``matplotlib.figure.Figure``), never pyplot, so no global state or GUI backend is
touched."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

__all__ = [
    "calibration_figure",
    "curves_figure",
    "gap_figure",
    "hardness_figure",
    "map_figure",
    "neighbours_figure",
    "score_histograms_figure",
    "shift_figure",
    "spectrum_figure",
]

DPI = 100


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def curves_figure(panels: Sequence[tuple[str, dict[str, tuple[np.ndarray, np.ndarray]]]]) -> bytes:
    """One panel per ``(title, {label: (x, y)})``: training curves against the step."""
    fig = Figure(figsize=(4.2 * len(panels), 3.2))
    for i, (title, series) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for label, (x, y) in series.items():
            style = {"marker": "o", "markersize": 3} if len(x) < 30 else {}
            ax.plot(x, y, label=label, **style)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def score_histograms_figure(
    steps: np.ndarray,
    positive: np.ndarray,
    negative: np.ndarray,
    edges: np.ndarray,
    joint: tuple[np.ndarray, np.ndarray] | None = None,
) -> bytes:
    """Zhu et al. (2021) 2-D histograms: for each step (x) the distribution over anchors of the
    positive score and of the negative mean (y, cosine); with ``joint = (positive, negative_mean)``
    per anchor, a third panel shows their joint histogram at the end of training."""
    n = 3 if joint is not None else 2
    fig = Figure(figsize=(4.4 * n, 3.4))
    for i, (title, counts) in enumerate(
        (("positive score per anchor", positive), ("mean negative score per anchor", negative))
    ):
        ax = fig.add_subplot(1, n, i + 1)
        counts = np.asarray(counts, float).T  # [bins, steps]
        x_edges = _step_edges(np.asarray(steps))
        mesh = ax.pcolormesh(
            x_edges, edges, np.ma.masked_equal(counts, 0), cmap="viridis", norm=LogNorm(vmin=1)
        )
        fig.colorbar(mesh, ax=ax, label="anchors")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel("cosine")
    if joint is not None:
        ax = fig.add_subplot(1, n, 3)
        pos, neg = joint
        keep = np.isfinite(pos) & np.isfinite(neg)
        *_, image = ax.hist2d(
            neg[keep], pos[keep], bins=30, range=[[-1, 1], [-1, 1]], cmin=1, cmap="magma"
        )
        fig.colorbar(image, ax=ax, label="anchors")
        ax.plot([-1, 1], [-1, 1], color="gray", lw=0.8, ls="--")
        ax.set_xlabel("mean negative score")
        ax.set_ylabel("positive score")
        ax.set_title("held-out views, end of training")
    fig.tight_layout()
    return _png(fig)


def _step_edges(steps: np.ndarray) -> np.ndarray:
    if len(steps) == 1:
        return np.array([steps[0] - 0.5, steps[0] + 0.5])
    mid = (steps[1:] + steps[:-1]) / 2
    return np.concatenate(
        [[steps[0] - (mid[0] - steps[0])], mid, [steps[-1] + (steps[-1] - mid[-1])]]
    )


def spectrum_figure(spectra: dict[str, np.ndarray]) -> bytes:
    """Log singular values of the embedding covariance per layer (Jing et al. 2022, Fig. 2)."""
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    for name, s in spectra.items():
        s = np.asarray(s, float)
        floor = max(s.max(), 1e-30) * 1e-12
        ax.plot(np.arange(1, len(s) + 1), np.log10(np.maximum(s, floor)), label=name)
    ax.set_xlabel("singular value rank")
    ax.set_ylabel("log10 singular value of covariance")
    ax.set_title("embedding spectrum per layer")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def hardness_figure(
    normalized_entropy: np.ndarray,
    top_mass: np.ndarray,
    temperature: float,
    sweep: dict[str, list[float]],
) -> bytes:
    """Per-anchor distribution of the penalty's normalised entropy and top-1 mass at the run's τ,
    and the mean of both against τ (Wang & Liu 2021, Fig. 3)."""
    fig = Figure(figsize=(12.6, 3.4))
    ax = fig.add_subplot(1, 3, 1)
    ax.hist(normalized_entropy, bins=30, range=(0, 1), color="tab:blue")
    ax.set_title(f"normalised entropy of penalty, τ={temperature:g}")
    ax.set_xlabel("entropy / log(#negatives)")
    ax.set_ylabel("anchors")
    ax = fig.add_subplot(1, 3, 2)
    ax.hist(top_mass, bins=30, range=(0, 1), color="tab:orange")
    ax.set_title(f"penalty on the hardest negative, τ={temperature:g}")
    ax.set_xlabel("top-1 mass")
    ax = fig.add_subplot(1, 3, 3)
    ax.plot(
        sweep["temperature"], sweep["normalized_entropy"], marker="o", label="normalised entropy"
    )
    ax.plot(sweep["temperature"], sweep["top_k_mass"], marker="s", label="top-1 mass")
    ax.axvline(temperature, color="gray", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("temperature τ")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("temperature sweep (mean over anchors)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def gap_figure(coords: np.ndarray, which: np.ndarray, names: tuple[str, str]) -> bytes:
    """A PCA map of two embedding sets coloured by set, with their centroids marked."""
    fig = Figure(figsize=(4.8, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    for k, (name, colour) in enumerate(zip(names, ("tab:blue", "tab:red"), strict=True)):
        pts = coords[which == k]
        ax.scatter(pts[:, 0], pts[:, 1], s=6, alpha=0.5, color=colour, label=name)
        c = pts.mean(axis=0)
        ax.scatter([c[0]], [c[1]], s=120, marker="X", color=colour, edgecolor="black")
    ax.set_title("two sets, PCA (× = centroid)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def shift_figure(samples: np.ndarray, distance: float, title: str) -> bytes:
    """Bootstrap distribution of a Fréchet distance."""
    fig = Figure(figsize=(4.8, 3.2))
    ax = fig.add_subplot(1, 1, 1)
    ax.hist(samples, bins=20, color="tab:purple", alpha=0.8)
    ax.axvline(distance, color="black", ls="--", lw=1, label=f"all rows: {distance:.3g}")
    ax.set_xlabel("Fréchet distance")
    ax.set_ylabel("bootstrap replicates")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def calibration_figure(reliability: dict[str, np.ndarray], ece: float) -> bytes:
    """Reliability diagram (Guo et al. 2017, Fig. 1): accuracy per confidence bin (bars) against
    the bin's mean confidence (red ticks); a calibrated probe has both on the diagonal."""
    edges, acc, count = reliability["edges"], reliability["accuracy"], reliability["count"]
    centres, width = (edges[1:] + edges[:-1]) / 2, edges[1] - edges[0]
    fig = Figure(figsize=(4.6, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    filled = count > 0
    ax.bar(centres[filled], acc[filled], width=width, edgecolor="black", label="accuracy")
    ax.scatter(
        centres[filled],
        reliability["confidence"][filled],
        marker="_",
        s=300,
        linewidths=2.5,
        color="tab:red",
        label="mean confidence",
        zorder=3,
    )
    ax.plot([0, 1], [0, 1], color="gray", ls="--", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"linear probe reliability, ECE = {ece:.3f}")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return _png(fig)


def map_figure(coords: np.ndarray, labels: np.ndarray | None, title: str) -> bytes:
    """A 2-D embedding map coloured by class label."""
    fig = Figure(figsize=(5.0, 4.4))
    ax = fig.add_subplot(1, 1, 1)
    if labels is None:
        ax.scatter(coords[:, 0], coords[:, 1], s=5, alpha=0.6)
    else:
        points = ax.scatter(
            coords[:, 0],
            coords[:, 1],
            c=labels,
            s=5,
            alpha=0.7,
            cmap="tab10" if labels.max() < 10 else "tab20",
        )
        if labels.max() < 20:
            fig.colorbar(points, ax=ax, label="class", ticks=np.unique(labels))
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return _png(fig)


def neighbours_figure(
    queries: np.ndarray,
    neighbours: np.ndarray,
    same_label: np.ndarray | None,
    similarities: np.ndarray,
) -> bytes:
    """Rows: a query image (blue frame), then its nearest neighbours (cosine similarity above
    each), framed green when the labels agree and red when they do not. Images are
    ``[Q, C, H, W]`` / ``[Q, k, C, H, W]`` in [0, 1]; drawn as one montage (one ``imshow``)."""
    q, k = neighbours.shape[:2]
    tiles = [[queries[i]] + [neighbours[i, j] for j in range(k)] for i in range(q)]
    frames = [
        [(0.04, 0.41, 0.85)]
        + [
            (0.55, 0.55, 0.55)
            if same_label is None
            else ((0.10, 0.50, 0.22) if same_label[i, j] else (0.81, 0.13, 0.18))
            for j in range(k)
        ]
        for i in range(q)
    ]
    size = max(queries.shape[-2:])
    scale = max(1, int(np.ceil(48 / size)))  # small images (8×8 digits) upscaled to ≥ 48 px
    border, gap, label = 3, 4, 14
    cell_h, cell_w = size * scale + 2 * border, size * scale + 2 * border
    canvas = np.ones((q * (cell_h + gap + label), (k + 1) * (cell_w + gap), 3))
    for i in range(q):
        for j in range(k + 1):
            y0, x0 = i * (cell_h + gap + label) + label, j * (cell_w + gap)
            canvas[y0 : y0 + cell_h, x0 : x0 + cell_w] = frames[i][j]
            tile = _rgb(tiles[i][j]).repeat(scale, axis=0).repeat(scale, axis=1)
            h, w = tile.shape[:2]
            canvas[y0 + border : y0 + border + h, x0 + border : x0 + border + w] = tile
    fig = Figure(figsize=(canvas.shape[1] / DPI * 1.3, canvas.shape[0] / DPI * 1.3))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(canvas, interpolation="nearest")
    for i in range(q):
        for j in range(k + 1):
            text = "query" if j == 0 else f"{similarities[i, j - 1]:.2f}"
            x = j * (cell_w + gap) + cell_w / 2
            ax.text(x, i * (cell_h + gap + label) + label - 3, text, ha="center", fontsize=7)
    ax.set_axis_off()
    return _png(fig)


def _rgb(image: np.ndarray) -> np.ndarray:
    """``[C, H, W]`` in [0, 1] as ``[H, W, 3]``."""
    image = np.clip(np.asarray(image, float), 0, 1)
    if image.shape[0] == 1:
        return np.repeat(image[0][..., None], 3, axis=2)
    return np.moveaxis(image[:3], 0, -1)
