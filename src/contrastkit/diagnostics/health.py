"""Is a run healthy? A few checks, each with documented thresholds, that turn the diagnostics into
"ok", "warn" or "fail" (or "n/a" when the numbers are missing). The report puts them at its top.

=====================  ===========================================  ==========  ============
check                  measured on                                  warn when   fail when
=====================  ===========================================  ==========  ============
training finished      status.json                                  interrupted failed
loss decreased         first vs last epoch loss (metrics.csv)       < 1 % drop  no drop
complete collapse      SimSiam std × √D of projector outputs        < 0.5       < 0.1
uniformity             Wang & Isola, t=2, of projector outputs      > −1.5      > −0.5
dimensional collapse   effective rank / min(N−1, D), backbone       < 0.10      < 0.02 or < 2
positive–negative gap  pos − neg mean cosine of held-out views      < 0.10      < 0.02
hardness               normalised entropy of the penalty at τ       > 0.99      —
kNN above chance       kNN accuracy / majority-class rate           < 2×        < 1.2×
kNN vs raw inputs      kNN − the same kNN on raw pixels             < 0         < −0.05
=====================  ===========================================  ==========  ============

Where the numbers come from: random-init encoders on digits give std × √D ≈ 0.03, uniformity ≈ 0,
a score gap ≈ 0.001 and a normalised entropy of 1.000; a SimCLR run of 30 epochs gives 0.87, −2.5,
0.46 and 0.72; points uniform on a high-dimensional sphere give std × √D → 1 and uniformity
→ −4 + 8/D. A uniformity above −0.5 means the mean squared distance between embeddings is ≲ 0.25
(cosines ≳ 0.88): they sit in a narrow cone. A normalised entropy near 1 means every negative gets
the same penalty: the loss is not hardness-aware at its temperature (Wang & Liu 2021), usually
because the embeddings have not spread yet. Projector outputs and scores are measured on two
augmented views of held-out images through the trained model; without the model, the score gap
comes from the last training epoch's logged statistics and the projector checks are "n/a".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["THRESHOLDS", "THRESHOLD_TABLE", "Check", "health_checks", "overall"]

Status = Literal["ok", "warn", "fail", "n/a"]

#: (warn, fail) thresholds of each check; see the module docstring for what they mean.
THRESHOLDS: dict[str, tuple[float, float]] = {
    "loss_drop": (0.01, 0.0),  # relative drop of the epoch loss, first → last
    "collapse_std": (0.5, 0.1),  # SimSiam's std of normalised outputs × √D
    "uniformity": (-1.5, -0.5),  # Wang & Isola, t = 2
    "effective_rank_fraction": (0.10, 0.02),
    "score_gap": (0.10, 0.02),  # mean positive cosine − mean negative cosine
    "normalized_entropy": (0.99, math.inf),
    "knn_over_chance": (2.0, 1.2),  # ratio to the majority-class rate
    "knn_minus_raw": (0.0, -0.05),
}


#: The table of the module docstring: (check, measured on, warn when, fail when).
THRESHOLD_TABLE: list[tuple[str, str, str, str]] = [
    ("training finished", "status.json", "interrupted or running", "failed"),
    ("loss decreased", "first vs last epoch loss (metrics.csv)", "< 1 % lower", "not lower"),
    (
        "complete collapse",
        "SimSiam std × √D of projector outputs (held-out views)",
        "< 0.5",
        "< 0.1",
    ),
    (
        "uniformity",
        "Wang & Isola, t = 2, of projector outputs (held-out views)",
        "> −1.5",
        "> −0.5",
    ),
    (
        "dimensional collapse",
        "effective rank / min(N−1, D) of backbone features (test)",
        "< 0.10",
        "< 0.02 or rank < 2",
    ),
    (
        "positive–negative gap",
        "mean positive − mean negative cosine (held-out views, else the last training epoch)",
        "< 0.10",
        "< 0.02",
    ),
    (
        "hardness",
        "normalised entropy of InfoNCE's penalty over negatives at the run's τ",
        "> 0.99",
        "—",
    ),
    ("kNN above chance", "kNN accuracy / majority-class rate (test)", "< 2×", "< 1.2×"),
    ("kNN vs raw inputs", "kNN − the same kNN on raw pixels (same rows)", "< 0", "< −0.05"),
]


@dataclass(frozen=True)
class Check:
    """One line of the health summary."""

    name: str
    status: Status
    value: str
    detail: str


def _lower_is_bad(value: float, warn: float, fail: float) -> Status:
    return "fail" if value < fail else "warn" if value < warn else "ok"


def _higher_is_bad(value: float, warn: float, fail: float) -> Status:
    return "fail" if value > fail else "warn" if value > warn else "ok"


def _number(x: Any) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def health_checks(m: dict[str, Any]) -> list[Check]:
    """The checks of the module docstring from a dict of measurements (missing keys give "n/a"):
    ``state``, ``loss_first``, ``loss_last``, ``collapse_std``, ``uniformity``,
    ``effective_rank``, ``effective_rank_fraction``, ``score_gap``, ``normalized_entropy``,
    ``score_gap_source``, ``temperature``, ``knn_accuracy``, ``chance``, ``raw_knn_accuracy``
    and ``baseline_knn_accuracy`` (the trained kNN on the rows of the raw baseline)."""
    checks = []
    state = m.get("state")
    if state is None:
        checks.append(Check("training finished", "n/a", "—", "no status.json"))
    else:
        status: Status = "ok" if state == "complete" else "fail" if state == "failed" else "warn"
        detail = {"ok": "the run completed", "fail": "the run failed"}.get(status, "not finished")
        if m.get("message"):
            detail += f": {m['message']}"
        checks.append(Check("training finished", status, str(state), detail))

    first, last = _number(m.get("loss_first")), _number(m.get("loss_last"))
    if first is None or last is None:
        checks.append(Check("loss decreased", "n/a", "—", "fewer than two logged losses"))
    else:
        drop = (first - last) / abs(first) if first else 0.0
        warn, fail = THRESHOLDS["loss_drop"]
        status = "fail" if drop <= fail else "warn" if drop < warn else "ok"
        checks.append(
            Check(
                "loss decreased", status, f"{first:.4g} → {last:.4g}", f"{100 * drop:.1f} % lower"
            )
        )

    def row(name: str, key: str, value_key: str, higher_is_bad: bool, what: str, fmt: str = ".3f"):
        value = _number(m.get(value_key))
        if value is None:
            checks.append(Check(name, "n/a", "—", f"{what} not measured"))
            return
        warn, fail = THRESHOLDS[key]
        judge = _higher_is_bad if higher_is_bad else _lower_is_bad
        limit = f"warn {'>' if higher_is_bad else '<'} {warn:g}" + (
            f", fail {'>' if higher_is_bad else '<'} {fail:g}" if math.isfinite(fail) else ""
        )
        checks.append(
            Check(name, judge(value, warn, fail), format(value, fmt), f"{what} ({limit})")
        )

    row(
        "complete collapse",
        "collapse_std",
        "collapse_std",
        False,
        "std of normalised projector outputs × √D; ≈1 spread, 0 collapsed",
    )
    row(
        "uniformity",
        "uniformity",
        "uniformity",
        True,
        "log E exp(−2‖u−v‖²) of projector outputs; 0 collapsed, ≈ −4 ideal",
    )
    rank, fraction = _number(m.get("effective_rank")), _number(m.get("effective_rank_fraction"))
    if rank is None or fraction is None:
        checks.append(Check("dimensional collapse", "n/a", "—", "effective rank not measured"))
    else:
        warn, fail = THRESHOLDS["effective_rank_fraction"]
        status = "fail" if fraction < fail or rank < 2 else "warn" if fraction < warn else "ok"
        checks.append(
            Check(
                "dimensional collapse",
                status,
                f"{rank:.1f} ({100 * fraction:.0f} %)",
                f"effective rank of backbone features, share of the possible rank "
                f"(warn < {warn:.0%}, fail < {fail:.0%} or rank < 2)",
            )
        )
    row(
        "positive–negative gap",
        "score_gap",
        "score_gap",
        False,
        "mean cosine of positives minus negatives"
        + (f" ({m['score_gap_source']})" if m.get("score_gap_source") else ""),
    )
    tau = _number(m.get("temperature"))
    row(
        "hardness",
        "normalized_entropy",
        "normalized_entropy",
        True,
        "normalised entropy of InfoNCE's penalty over negatives"
        + (f" at τ={tau:g}" if tau else "")
        + "; 1 = all negatives weigh the same",
    )

    knn, chance = _number(m.get("knn_accuracy")), _number(m.get("chance"))
    if knn is None or chance is None or chance <= 0:
        checks.append(Check("kNN above chance", "n/a", "—", "no kNN accuracy or labels"))
    else:
        warn, fail = THRESHOLDS["knn_over_chance"]
        checks.append(
            Check(
                "kNN above chance",
                _lower_is_bad(knn / chance, warn, fail),
                f"{knn:.3f}",
                f"majority class {chance:.3f}; ratio {knn / chance:.2f} (warn < {warn:g}×, "
                f"fail < {fail:g}×)",
            )
        )
    raw = _number(m.get("raw_knn_accuracy"))
    if knn is None or raw is None:
        checks.append(Check("kNN vs raw inputs", "n/a", "—", "no raw-input baseline"))
    else:
        warn, fail = THRESHOLDS["knn_minus_raw"]
        own = _number(m.get("baseline_knn_accuracy"))
        own = knn if own is None else own  # the trained kNN on the baseline's rows
        checks.append(
            Check(
                "kNN vs raw inputs",
                _lower_is_bad(own - raw, warn, fail),
                f"{own:.3f} vs {raw:.3f}",
                f"the same kNN on raw pixels needs no training (warn < {warn:g}, fail < {fail:g})",
            )
        )
    return checks


def overall(checks: list[Check]) -> Status:
    """The worst status among the checks ("n/a" counts as nothing)."""
    statuses = {c.status for c in checks}
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "ok"
