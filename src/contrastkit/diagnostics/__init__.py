"""Diagnostics of an embedding space: pure functions on embeddings (and labels) that measure
geometry, dimensional collapse, positive/negative scores, hardness, contrastive gap, data-set
shift, calibration, 2-D maps and neighbours; :func:`diagnose` collects them for one or two sets;
:mod:`contrastkit.diagnostics.health` turns them into a verdict."""

from __future__ import annotations

from contrastkit.diagnostics.calibration import (
    expected_calibration_error,
    probe_calibration,
    reliability_diagram,
)
from contrastkit.diagnostics.gap import (
    centroid_distance,
    cross_uniformity,
    linear_separability,
    modality_gap,
)
from contrastkit.diagnostics.geometry import collapse_std, sphere_geometry
from contrastkit.diagnostics.hardness import (
    DEFAULT_TEMPERATURES,
    hardness_statistics,
    temperature_sweep,
)
from contrastkit.diagnostics.health import THRESHOLDS, Check, health_checks, overall
from contrastkit.diagnostics.maps import (
    available_map_methods,
    embedding_map,
    nearest_neighbours,
    neighbour_label_agreement,
)
from contrastkit.diagnostics.scores import SCORE_KEYS, score_statistics, summarize_scores
from contrastkit.diagnostics.shift import (
    frechet_bootstrap,
    frechet_distance,
    frechet_distance_from_moments,
)
from contrastkit.diagnostics.spectrum import (
    covariance_spectrum,
    effective_rank,
    singular_values,
    spectrum_summary,
)
from contrastkit.diagnostics.summary import diagnose

__all__ = [
    "DEFAULT_TEMPERATURES",
    "SCORE_KEYS",
    "THRESHOLDS",
    "Check",
    "available_map_methods",
    "centroid_distance",
    "collapse_std",
    "covariance_spectrum",
    "cross_uniformity",
    "diagnose",
    "effective_rank",
    "embedding_map",
    "expected_calibration_error",
    "frechet_bootstrap",
    "frechet_distance",
    "frechet_distance_from_moments",
    "hardness_statistics",
    "health_checks",
    "linear_separability",
    "modality_gap",
    "nearest_neighbours",
    "neighbour_label_agreement",
    "overall",
    "probe_calibration",
    "reliability_diagram",
    "score_statistics",
    "singular_values",
    "spectrum_summary",
    "sphere_geometry",
    "summarize_scores",
    "temperature_sweep",
]
