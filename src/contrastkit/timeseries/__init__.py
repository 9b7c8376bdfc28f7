"""Time-series contrastive learning: TS2Vec, AutoTCL and COMET on the UCR/UEA archive.

The whole modality in one subpackage::

    from contrastkit.timeseries import load_timeseries, TS2Vec, svm_accuracy

    data = load_timeseries("ucr:GunPoint")                # (n, channels, length), NaN-padded
    model = TS2Vec(data.channels, method="ts2vec", seed=0)  # or "autotcl", "comet"
    model.fit(data.x_train)                                # default: 200 or 600 iterations
    acc = svm_accuracy(model.encode(data.x_train), data.y_train,
                       model.encode(data.x_test), data.y_test)

or in one call: ``fit_evaluate(data, method="ts2vec", seed=0)``.
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
    id_contrastive_loss,
    instance_contrastive_loss,
    mask_size_penalty,
    mmd,
    temporal_consistency,
    temporal_contrastive_loss,
)
from contrastkit.timeseries.model import (
    METHODS,
    AutoTCLOptions,
    COMETOptions,
    TS2Vec,
    default_iters,
)
from contrastkit.timeseries.run import MODEL_OPTIONS, TimeSeriesResult, fit_evaluate
from contrastkit.timeseries.views import (
    Crops,
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
    "MODEL_OPTIONS",
    "AugmentedView",
    "AutoTCLAugmenter",
    "AutoTCLOptions",
    "COMETOptions",
    "Crops",
    "TS2Vec",
    "TSEncoder",
    "TimeSeriesData",
    "TimeSeriesResult",
    "autotcl_global_loss",
    "autotcl_local_loss",
    "binomial_mask",
    "bundled_datasets",
    "comet_level_loss",
    "continuous_mask",
    "default_iters",
    "fit_evaluate",
    "fit_svm",
    "hierarchical_contrastive_loss",
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
