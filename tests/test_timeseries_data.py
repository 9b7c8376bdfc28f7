"""Time-series data: the bundled UCR/UEA sets through aeon, .npz and CSV files, standardisation
as TS2Vec's loaders, and clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest

from contrastkit.errors import ContrastkitError
from contrastkit.timeseries.data import (
    bundled_datasets,
    load_csv_series,
    load_npz_series,
    load_timeseries,
    series_lengths,
    standardize,
    timeseries_from_arrays,
    ucr_source,
)

aeon = pytest.importorskip("aeon")


def test_bundled_sets_are_listed():
    names = bundled_datasets()
    for name in ("GunPoint", "ArrowHead", "BasicMotions", "JapaneseVowels"):
        assert name in names
    assert "Airline" not in names  # a forecasting series, not a classification set


def test_ucr_univariate_is_used_as_archived():
    from aeon.datasets import load_classification

    data = load_timeseries("ucr:gunpoint")  # names are case-insensitive
    raw, y = load_classification("GunPoint", split="train")
    assert data.name == "ucr:GunPoint" and data.x_train.shape == (50, 1, 150)
    assert data.x_test.shape == (150, 1, 150) and data.num_classes == 2
    np.testing.assert_allclose(data.x_train, raw.astype(np.float32))  # already z-normalised
    assert data.classes == ("1", "2")
    np.testing.assert_array_equal(data.y_train, (y == "2").astype(np.int64))
    assert data.equal_length


def test_uea_unequal_lengths_padded_and_channel_standardised():
    from aeon.datasets import load_classification

    data = load_timeseries("ucr:JapaneseVowels")
    raw, _ = load_classification("JapaneseVowels", split="train")
    raw_test, _ = load_classification("JapaneseVowels", split="test")
    longest = max(s.shape[1] for s in [*raw, *raw_test])
    assert data.x_train.shape == (270, 12, longest) and data.channels == 12
    np.testing.assert_array_equal(data.lengths_train, [s.shape[1] for s in raw])
    assert not data.equal_length
    assert np.isnan(data.x_train[0, :, raw[0].shape[1] :]).all()
    # per-channel standardisation with training statistics (TS2Vec's StandardScaler)
    np.testing.assert_allclose(np.nanmean(data.x_train, axis=(0, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(np.nanstd(data.x_train, axis=(0, 2)), 1, atol=1e-5)
    values = np.concatenate([s for s in raw], axis=1)
    want = (raw_test[0] - values.mean(1, keepdims=True)) / values.std(1, keepdims=True)
    np.testing.assert_allclose(
        data.x_test[0, :, : raw_test[0].shape[1]], want, rtol=1e-4, atol=1e-5
    )


def test_non_normalised_ucr_set_gets_global_statistics():
    data = load_timeseries("ucr:PickupGestureWiimoteZ")
    assert np.nanmean(data.x_train) == pytest.approx(0, abs=1e-5)
    assert np.nanstd(data.x_train) == pytest.approx(1, abs=1e-5)
    assert (data.lengths_train < data.length).any()


def test_unknown_and_unbundled_names():
    with pytest.raises(ContrastkitError, match="did you mean 'GunPoint'"):
        load_timeseries("ucr:GunPiont")
    with pytest.raises(ContrastkitError, match="download=True"):
        load_timeseries("ucr:Coffee")
    with pytest.raises(ContrastkitError, match="ucr:GunPoint"):
        ucr_source(None)
    with pytest.raises(ContrastkitError, match="did you mean 'csv'"):
        load_timeseries("cvs:file.csv")


def test_standardize_modes_by_hand():
    tr = np.array([[[1.0, 3.0, np.nan]], [[5.0, 7.0, 9.0]]], dtype=np.float32)
    te = np.array([[[5.0, 5.0, 5.0]]], dtype=np.float32)
    g_tr, g_te = standardize(tr, te, "global")
    mean, std = 5.0, np.std([1, 3, 5, 7, 9])
    np.testing.assert_allclose(g_te, (5.0 - mean) / std)
    np.testing.assert_allclose(g_tr[0, 0, :2], (np.array([1, 3]) - mean) / std, rtol=1e-6)
    s_tr, s_te = standardize(tr, te, "series")
    np.testing.assert_allclose(s_tr[0, 0, :2], [-1, 1])
    np.testing.assert_allclose(s_te, 0)  # constant series: zero std keeps scale 1
    assert standardize(tr, te, "none")[0] is tr
    with pytest.raises(ContrastkitError, match="did you mean 'channel'"):
        standardize(tr, te, "chanel")


def test_npz_round_trip_and_split(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 2, 16)).astype(np.float32)
    y = np.array(["a", "b", "c"] * 10)
    np.savez(tmp_path / "s.npz", x=x, y=y)
    data = load_timeseries(f"npz:{tmp_path / 's.npz'}", seed=1, test_fraction=0.2)
    assert data.x_train.shape == (24, 2, 16) and data.x_test.shape == (6, 2, 16)
    assert data.classes == ("a", "b", "c") and np.bincount(data.y_test).tolist() == [2, 2, 2]
    again = load_npz_series(tmp_path / "s.npz", seed=1, test_fraction=0.2)
    np.testing.assert_array_equal(again.x_train, data.x_train)
    np.savez(tmp_path / "t.npz", x=x[:20], y=y[:20], x_test=x[20:, :, :10], y_test=y[20:])
    fixed = load_npz_series(tmp_path / "t.npz", normalize="none")
    assert fixed.x_test.shape == (10, 2, 16) and np.isnan(fixed.x_test[:, :, 10:]).all()
    np.testing.assert_array_equal(fixed.lengths_test, 10)


def test_npz_rejects_bad_input(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([np.zeros(3), np.zeros(4)], dtype=object))
    with pytest.raises(ContrastkitError, match="Python objects"):
        load_npz_series(tmp_path / "obj.npz")
    bad = {
        "inf": (np.array([[[0.0, np.inf, 1.0]]] * 4), "infinite"),
        "shape": (np.zeros((4, 2, 3, 5)), "shape"),
        "empty": (np.full((4, 1, 3), np.nan), "all NaN"),
        "short": (np.zeros((4, 1, 1)), "length at least 2"),
    }
    for name, (x, message) in bad.items():
        np.savez(tmp_path / f"{name}.npz", x=x)
        with pytest.raises(ContrastkitError, match=message):
            load_npz_series(tmp_path / f"{name}.npz")
    np.savez(tmp_path / "nolabel.npz", y=np.zeros(3))
    with pytest.raises(ContrastkitError, match="no array named 'x'"):
        load_npz_series(tmp_path / "nolabel.npz")
    with pytest.raises(ContrastkitError, match="NaN labels"):
        timeseries_from_arrays("a", np.zeros((4, 1, 5)), np.array([0, 1, np.nan, 1]))
    with pytest.raises(ContrastkitError, match="no training series"):
        timeseries_from_arrays(
            "a", np.zeros((2, 1, 5)), [0, 1], x_test=np.zeros((1, 1, 5)), y_test=[2]
        )


def test_npz_group_ids_keep_patients_out_of_both_splits(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 1, 12)).astype(np.float32)
    patients = np.repeat([f"p{i}" for i in range(8)], 5)  # 8 patients × 5 series
    trials = np.arange(40) // 2 + 100  # 20 trials of 2 series
    np.savez(tmp_path / "g.npz", x=x, y=np.arange(40) % 2, trial_ids=trials, patient_ids=patients)
    data = load_npz_series(tmp_path / "g.npz", seed=3, test_fraction=0.25, normalize="none")
    assert len(data.x_train) == 30 and len(data.x_test) == 10  # 2 of 8 patients held out
    rows = [int(np.flatnonzero((x == s).all(axis=(1, 2)))[0]) for s in data.x_train]
    held_out = set(range(40)) - set(rows)
    assert {patients[i] for i in rows}.isdisjoint({patients[i] for i in held_out})
    # the kept ids are the training rows' own ids, as codes
    _, codes = np.unique(patients[rows], return_inverse=True)
    np.testing.assert_array_equal(data.patient_ids, codes)
    _, codes = np.unique(trials[rows], return_inverse=True)
    np.testing.assert_array_equal(data.trial_ids, codes)
    fixed = timeseries_from_arrays("f", x[:30], x_test=x[30:], trial_ids=trials[:30])
    assert fixed.trial_ids.shape == (30,) and fixed.patient_ids is None
    plain = timeseries_from_arrays("p", x)
    assert plain.trial_ids is None and plain.patient_ids is None


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (np.arange(39), "one id per series"),
        (np.r_[np.arange(39.0), np.nan], "missing"),
        (np.zeros(40), "single patient/trial group"),
    ],
)
def test_bad_group_ids_are_refused(ids, message):
    x = np.random.default_rng(0).normal(size=(40, 1, 12))
    with pytest.raises(ContrastkitError, match=message):
        timeseries_from_arrays("g", x, patient_ids=ids)


def test_csv_train_test_siblings_and_ragged_rows(tmp_path):
    (tmp_path / "Toy_TRAIN.tsv").write_text("1\t0.5\t1.5\t2.5\n2\t3\t4\n1\t1\t2\t3\n2\t0\t0\tNaN\n")
    (tmp_path / "Toy_TEST.tsv").write_text("2\t1\t1\t1\n1\t2\t2\n")
    data = load_csv_series(tmp_path / "Toy_TRAIN.tsv", normalize="none")
    assert data.x_train.shape == (4, 1, 3) and data.x_test.shape == (2, 1, 3)
    np.testing.assert_array_equal(data.lengths_train, [3, 2, 3, 2])
    np.testing.assert_array_equal(data.y_train, [0, 1, 0, 1])
    np.testing.assert_allclose(data.x_train[0, 0], [0.5, 1.5, 2.5])
    (tmp_path / "mv.csv").write_text("a,1,2,3,4\nb,5,6,7,8\na,1,1,2,2\nb,0,0,1,1\n" * 3)
    mv = load_csv_series(tmp_path / "mv.csv", channels=2, normalize="none", test_fraction=0.5)
    assert mv.channels == 2 and mv.length == 2
    (tmp_path / "bad.csv").write_text("1,2,x\n")
    with pytest.raises(ContrastkitError, match="non-numeric"):
        load_csv_series(tmp_path / "bad.csv")


def test_series_lengths():
    x = np.zeros((3, 2, 5), dtype=np.float32)
    x[1, :, 3:] = np.nan
    x[2, 0, 4] = np.nan  # one channel missing at the end is still observed
    x[2, :, 1] = np.nan  # a gap inside does not shorten the series
    np.testing.assert_array_equal(series_lengths(x), [5, 3, 5])
