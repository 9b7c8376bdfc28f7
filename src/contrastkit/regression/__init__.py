"""Contrastive learning for continuous targets: SupReMix (mixtures as hard pairs), ConR (a
label-similarity-weighted contrastive regulariser), pairs from targets, the imbalanced-regression
probe (ridge on frozen features; MAE overall and per many/medium/few-shot region) and real
long-tailed tables."""

from __future__ import annotations

from contrastkit.regression.conr import ConRLoss, conr_loss
from contrastkit.regression.pairs import TargetPairs, check_targets
from contrastkit.regression.probe import REGIONS, regression_metrics, regression_probe, shot_regions
from contrastkit.regression.supremix import Mixtures, SupReMixLoss, supremix_loss, supremix_mixtures
from contrastkit.regression.tables import TABLES, RegressionTable, load_table
from contrastkit.regression.train import (
    MLPEncoder,
    Regressor,
    corrupt,
    encode,
    fit_regression,
    fit_supremix,
)

__all__ = [
    "REGIONS",
    "TABLES",
    "ConRLoss",
    "MLPEncoder",
    "Mixtures",
    "RegressionTable",
    "Regressor",
    "SupReMixLoss",
    "TargetPairs",
    "check_targets",
    "conr_loss",
    "corrupt",
    "encode",
    "fit_regression",
    "fit_supremix",
    "load_table",
    "regression_metrics",
    "regression_probe",
    "shot_regions",
    "supremix_loss",
    "supremix_mixtures",
]
