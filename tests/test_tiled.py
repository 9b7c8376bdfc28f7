"""The tiled path equals the dense reference in values and gradients for every pair structure."""

from __future__ import annotations

import pytest
import torch

from contrastkit.errors import ContrastkitError
from contrastkit.functional import Pairs, info_nce
from contrastkit.functional import infonce as engine

torch.set_num_threads(1)


def leaves(*tensors):
    return [
        t.detach().clone().double().requires_grad_(True) if t is not None else None for t in tensors
    ]


def both_paths(anchors, pairs, candidates=None, extra=None, neg_w=None, pos_w=None, **options):
    """Losses and gradients of every input, dense and tiled (tiles of 3: many partial tiles), for
    per-anchor losses (the recompute path) and for the mean and sum (the fused path)."""
    for reduction in ("none", "mean", "sum"):
        results = []
        for backend in ("dense", "tiled"):
            a, c, e, nw, pw = leaves(anchors, candidates, extra, neg_w, pos_w)
            loss = info_nce(
                a,
                pairs,
                c,
                extra_negatives=e,
                negative_weight=nw,
                positive_weight=pw,
                backend=backend,
                tile_size=3,
                reduction=reduction,
                **options,
            )
            if reduction == "none":  # distinct weights per anchor reach every anchor's gradient
                valid = ~loss.isnan()
                weights = torch.linspace(0.5, 2.0, int(valid.sum()), dtype=loss.dtype)
                (loss[valid] * weights).sum().backward()
            else:
                (2.5 * loss).backward()
            results.append((loss.detach(), [t.grad for t in (a, c, e, nw, pw) if t is not None]))
        (dense, dense_grads), (tiled, tiled_grads) = results
        torch.testing.assert_close(tiled, dense, equal_nan=True)
        for g_tiled, g_dense in zip(tiled_grads, dense_grads, strict=True):
            torch.testing.assert_close(g_tiled, g_dense)


@pytest.mark.parametrize("exclude_positives", [False, True])
@pytest.mark.parametrize("n_views", [2, 3])
def test_views(n_views, exclude_positives):
    torch.manual_seed(n_views)
    both_paths(
        torch.randn(7 * n_views, 5),
        Pairs.views(7, n_views),
        temperature=0.2,
        exclude_positives=exclude_positives,
    )


def test_labels_with_a_sample_that_has_no_positive():
    torch.manual_seed(1)
    labels = torch.tensor([0, 1, 1, 2, 0, 3, 1, 2])
    both_paths(torch.randn(8, 4), Pairs.labels(labels), temperature=0.5)


def test_extra_negatives_and_weights():
    torch.manual_seed(2)
    both_paths(
        torch.randn(10, 6),
        Pairs.views(5),
        extra=torch.randn(7, 6),
        neg_w=torch.rand(17) + 0.2,
        pos_w=torch.rand(10) + 0.5,
        temperature=0.3,
    )


def test_local_anchors_against_global_candidates():
    torch.manual_seed(3)
    everything = torch.randn(12, 4)
    ids = torch.arange(6).repeat(2)
    both_paths(
        everything[4:8], Pairs(ids[4:8], ids, self_offset=4), everything.clone(), temperature=0.1
    )


def test_cross_pairs_without_self():
    torch.manual_seed(4)
    both_paths(torch.randn(9, 3), Pairs.cross(9), torch.randn(9, 3), temperature=0.07)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_zero_weights_on_candidates_leave_only_the_positive(reduction):
    """MoCo's use: weight 0 on every in-batch key (the positive's own weight is ignored)."""
    torch.manual_seed(6)
    q, k, queue = torch.randn(6, 4), torch.randn(6, 4), torch.randn(5, 4)
    weight = torch.cat([torch.zeros(6), torch.ones(5)])
    for backend in ("dense", "tiled"):
        a = q.clone().requires_grad_(True)
        loss = info_nce(
            a,
            Pairs.cross(6),
            k,
            extra_negatives=queue,
            negative_weight=weight,
            backend=backend,
            tile_size=4,
            reduction=reduction,
        )
        loss.sum().backward()
        if backend == "dense":
            expected, expected_grad = loss.detach(), a.grad
    torch.testing.assert_close(loss.detach(), expected)
    torch.testing.assert_close(a.grad, expected_grad)
    assert torch.isfinite(a.grad).all()


def test_reductions_agree_and_auto_switches_by_size(monkeypatch):
    torch.manual_seed(5)
    z = torch.randn(16, 8)
    pairs = Pairs.views(8)
    for reduction in ("mean", "sum"):
        torch.testing.assert_close(
            info_nce(z, pairs, backend="tiled", tile_size=5, reduction=reduction),
            info_nce(z, pairs, backend="dense", reduction=reduction),
        )
    calls = []
    real = engine.tiled_reduced_loss
    monkeypatch.setattr(
        engine, "tiled_reduced_loss", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    info_nce(z, pairs)
    assert not calls  # 256 logits: dense
    monkeypatch.setattr(engine, "AUTO_TILED_LOGITS", 100)
    info_nce(z, pairs)
    assert calls == [1]
    info_nce(z, pairs, hard_negatives=3)  # dense-only option: auto stays dense
    assert calls == [1]


def test_dense_only_options_are_refused_on_the_tiled_path():
    z = torch.randn(8, 3)
    with pytest.raises(ContrastkitError, match="backend='dense'"):
        info_nce(z, Pairs.views(4), backend="tiled", hard_negatives=2)
    with pytest.raises(ContrastkitError, match="backend='dense'"):
        info_nce(z, Pairs.views(4), backend="tiled", negative_weight=torch.ones(8, 8))
    with pytest.raises(ContrastkitError, match="backend must be"):
        info_nce(z, Pairs.views(4), backend="fast")
