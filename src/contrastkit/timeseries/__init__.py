"""Time-series contrastive learning: TS2Vec, AutoTCL and COMET on the UCR/UEA archive.

The whole modality in one subpackage::

    import contrastkit as ck
    from contrastkit.timeseries import load_timeseries

    data = load_timeseries("ucr:GunPoint")                # (n, channels, length), NaN-padded
    result = ck.fit(ck.load_config("ts2vec"), data=data)  # or "autotcl", "comet"
    result.metrics["svm_accuracy"], result.embed(data.x_test)

Training goes through the one path (:mod:`contrastkit.tasks.timeseries`); this package holds the
data, views, encoder, losses, the trainable module :class:`TS2Vec` and the SVM protocol.
"""

from __future__ import annotations

from contrastkit.timeseries.autotcl import AugmentedView, AutoTCLAugmenter, sample_mask
from contrastkit.timeseries.data import (
    TimeSeriesData,
    bundled_datasets,
    load_csv_series,
    load_npz_series,
    load_timeseries,
    load_ucr,
    series_lengths,
    standardize,
    timeseries_from_arrays,
    ucr_source,
)
from contrastkit.timeseries.encoder import TSEncoder, instance_pool
from contrastkit.timeseries.eval import fit_svm, one_nn_accuracy, svm_accuracy
from contrastkit.timeseries.losses import (
    autotcl_global_loss,
    autotcl_local_loss,
    comet_level_loss,
    hierarchical_contrastive_loss,
    hierarchical_terms,
    id_contrastive_loss,
    instance_contrastive_loss,
    mask_size_penalty,
    mmd,
    temporal_consistency,
    temporal_contrastive_loss,
)
from contrastkit.timeseries.model import (
    METHODS,
    SeriesGroups,
    TS2Vec,
    default_iters,
    prepare_series,
)
from contrastkit.timeseries.views import (
    Crops,
    Shard,
    binomial_mask,
    continuous_mask,
    jitter,
    permutation,
    random_crops,
    scaling,
    time_warp,
)

__all__ = [
    "METHODS",
    "AugmentedView",
    "AutoTCLAugmenter",
    "Crops",
    "SeriesGroups",
    "Shard",
    "TS2Vec",
    "TSEncoder",
    "TimeSeriesData",
    "autotcl_global_loss",
    "autotcl_local_loss",
    "binomial_mask",
    "bundled_datasets",
    "comet_level_loss",
    "continuous_mask",
    "default_iters",
    "fit_svm",
    "hierarchical_contrastive_loss",
    "hierarchical_terms",
    "id_contrastive_loss",
    "instance_contrastive_loss",
    "instance_pool",
    "jitter",
    "load_csv_series",
    "load_npz_series",
    "load_timeseries",
    "load_ucr",
    "mask_size_penalty",
    "mmd",
    "one_nn_accuracy",
    "permutation",
    "prepare_series",
    "random_crops",
    "sample_mask",
    "scaling",
    "series_lengths",
    "standardize",
    "svm_accuracy",
    "temporal_consistency",
    "temporal_contrastive_loss",
    "time_warp",
    "timeseries_from_arrays",
    "ucr_source",
]
