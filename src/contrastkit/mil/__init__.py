"""Multiple-instance learning: bags of real images, MIL pooling, SC-MIL (supervised contrast on
bag representations) and INS (instance-level weakly supervised contrast + prototype
pseudo-labels), with bag AUC and instance accuracy."""

from __future__ import annotations

from contrastkit.mil.bags import BagBatch, Bags, image_bags, make_bags
from contrastkit.mil.ins import (
    INSModel,
    INSState,
    candidate_sets,
    fit_ins,
    moco_loss,
    predict_ins,
    pseudo_labels,
    soft_cross_entropy,
    update_confidence,
    weakly_supervised_contrastive,
)
from contrastkit.mil.metrics import bag_auc, instance_metrics, mil_metrics
from contrastkit.mil.pooling import AttentionPool, MaxPool, MeanPool, build_pooling, segment_softmax
from contrastkit.mil.scmil import (
    SCHEDULES,
    MILModel,
    MILOutput,
    SCMILLoss,
    alpha_schedule,
    bag_views,
    fit_mil,
    predict_mil,
    supcon_bags,
)

__all__ = [
    "SCHEDULES",
    "AttentionPool",
    "BagBatch",
    "Bags",
    "INSModel",
    "INSState",
    "MILModel",
    "MILOutput",
    "MaxPool",
    "MeanPool",
    "SCMILLoss",
    "alpha_schedule",
    "bag_auc",
    "bag_views",
    "build_pooling",
    "candidate_sets",
    "fit_ins",
    "fit_mil",
    "image_bags",
    "instance_metrics",
    "make_bags",
    "mil_metrics",
    "moco_loss",
    "predict_ins",
    "predict_mil",
    "pseudo_labels",
    "segment_softmax",
    "soft_cross_entropy",
    "supcon_bags",
    "update_confidence",
    "weakly_supervised_contrastive",
]
