"""Two-tower methods end to end: the composition (shared towers, momentum keys, dropout views),
the training loop (batches, schedule, the logit-scale clamp, a non-finite loss) and
`contrastkit fit` on real data (Fashion-MNIST captions, a pairs CSV of stdlib docstrings)."""

from __future__ import annotations

import csv
import itertools
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from contrastkit.config import load_config
from contrastkit.errors import ContrastkitError
from contrastkit.multimodal.model import DualEncoder, SentenceContrast, projection
from contrastkit.multimodal.run import TowerOptions
from contrastkit.multimodal.train import after_optimizer_step, batches, train_steps, warmup_cosine
from contrastkit.objectives.multimodal import CLIPLoss, CoCoSoDaLoss, SentenceContrastLoss
from contrastkit.train.cli import main
from contrastkit.train.rundir import RunDir

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class Linear(nn.Module):
    """A tower over float features with the ``out_dim`` attribute towers carry."""

    def __init__(self, d_in: int, out_dim: int) -> None:
        super().__init__()
        self.out_dim, self.net = out_dim, nn.Linear(d_in, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_batches_cover_every_row_once_per_epoch_without_short_batches():
    out = batches(10, 3, n_steps=7, seed=0)
    assert len(out) == 7 and all(len(b) == 3 for b in out)
    for epoch in (out[0:3], out[3:6]):  # 3 full batches per epoch, one row left out each time
        rows = np.concatenate(epoch)
        assert len(set(rows.tolist())) == 9
    assert [b.tolist() for b in out] == [b.tolist() for b in batches(10, 3, 7, seed=0)]
    with pytest.raises(ContrastkitError, match="batch_size"):
        batches(4, 5, 1, seed=0)


def test_warmup_then_cosine_schedule():
    factors = [warmup_cosine(s, 10, 0.2) for s in range(10)]
    assert factors[:2] == [0.5, 1.0]
    assert factors[2] == pytest.approx(1.0) and factors[-1] == pytest.approx(
        0.5 * (1 + math.cos(math.pi * 7 / 8))
    )
    assert all(a >= b for a, b in itertools.pairwise(factors[1:]))


def test_shared_towers_have_one_set_of_weights_and_separate_projections():
    tower = Linear(6, 8)
    model = DualEncoder(tower, tower, CLIPLoss(), dim=4, projection_kind="linear")
    names = [n for n, _ in model.named_parameters()]
    assert sum(n.startswith("tower_") for n in names) == 2  # one weight + bias, listed once
    assert model.head_a is not model.head_b
    x = torch.randn(5, 6)
    assert torch.equal(model.tower_a(x), model.tower_b(x))
    assert isinstance(projection(8, 4, "none"), nn.Identity)
    with pytest.raises(ContrastkitError, match="projection"):
        projection(8, 4, "conv")


def test_momentum_keys_follow_the_online_towers_and_get_no_gradient():
    torch.manual_seed(0)
    tower = Linear(6, 8)
    objective = CoCoSoDaLoss(dim=8, queue_size=8)
    model = DualEncoder(
        tower,
        tower,
        objective,
        projection_kind="none",
        momentum=0.5,
        augment_a=lambda x: x + 0.01,
        augment_b=None,
    )
    before = model.key_a.encoder[0].net.weight.clone()
    with torch.no_grad():
        tower.net.weight.add_(1.0)
    loss = model.training_loss(torch.randn(4, 6), torch.randn(4, 6))
    loss.backward()
    after = model.key_a.encoder[0].net.weight
    assert torch.allclose(after, 0.5 * before + 0.5 * tower.net.weight.detach())
    assert all(p.grad is None for p in model.key_a.parameters())
    assert tower.net.weight.grad is not None
    assert all(int(q.written) == 8 for q in objective.queues.values())  # random init: full
    assert not any(torch.equal(q.rows[:4], q.rows[4:]) for q in objective.queues.values())


def test_dropout_views_are_the_sentence_objective_input():
    class Noisy(nn.Module):
        out_dim = 8

        def forward(self, x):
            return x + 0.1 * torch.randn_like(x)

    method = SentenceContrast(Noisy(), SentenceContrastLoss(dim=8, num_pos=3), num_pos=3)
    x = torch.randn(6, 8)
    assert torch.isfinite(method.training_loss(x))
    assert not torch.equal(method.embed("a", x), method.embed("a", x))  # the tower's noise
    with pytest.raises(ContrastkitError, match="num_pos"):
        SentenceContrast(Noisy(), SentenceContrastLoss(dim=8), num_pos=1)


def test_the_loop_clamps_the_logit_scale_after_every_step():
    torch.manual_seed(0)
    objective = CLIPLoss(temperature=0.02)  # logit scale 50, clamped at 100
    model = DualEncoder(Linear(4, 8), Linear(4, 8), objective, dim=8)
    x, y = torch.randn(32, 4), torch.randn(32, 4)
    losses = train_steps(
        model, lambda rows: (x[rows], y[rows]), 32, n_steps=20, batch_size=8, lr=1.0
    )
    assert len(losses) == 20
    assert float(objective.logit_scale().detach()) <= 100.0 + 1e-4
    after_optimizer_step(model)  # idempotent


def test_a_non_finite_loss_stops_training_with_a_clear_error():
    class Broken(nn.Module):
        def forward(self, a, b):
            return (a.sum() + b.sum()) * float("nan")

    model = DualEncoder(Linear(4, 8), Linear(4, 8), Broken(), dim=8)
    x = torch.randn(8, 4)
    with pytest.raises(ContrastkitError, match="became nan at step 0"):
        train_steps(model, lambda rows: (x[rows], x[rows]), 8, n_steps=2, batch_size=4, lr=0.1)


def test_tower_options_are_checked():
    with pytest.raises(ContrastkitError, match="did you mean 'steps'"):
        TowerOptions.from_dict({"step": 3})
    with pytest.raises(ContrastkitError, match=r"towers\.batch_size"):
        TowerOptions.from_dict({"batch_size": 0})
    assert TowerOptions.from_dict({"steps": 0}).steps == 0


def _cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_clip_on_fashion_mnist_captions_writes_a_complete_run(tmp_path, capsys):
    out = tmp_path / "clip"
    code, stdout, err = _cli(
        capsys,
        "fit",
        "--config",
        "clip-gap",
        "--out",
        out,
        "--threads",
        1,
        "towers.steps=3",
        "towers.max_train_pairs=64",
        "towers.max_test_pairs=64",
        "towers.batch_size=16",
        "towers.feature_cache=null",
    )
    assert code == 0, err
    run = RunDir(out)
    assert run.status()["state"] == "complete" and run.status()["steps"] == 3
    results = json.loads(run.results_path.read_text())
    assert 0 <= results["zero_shot_accuracy"] <= 1
    assert 0.5 <= results["gap/linear_separability"] <= 1
    assert results["gap/centroid_distance"] >= 0
    with np.load(run.embeddings_path, allow_pickle=False) as arrays:
        assert arrays["test_a"].shape == (64, 128) and arrays["test_b"].shape == (64, 128)
    state = torch.load(run.model_path, weights_only=True)
    assert "objective.logit_scale.log_scale" in state
    assert "zero_shot_accuracy" in stdout


@pytest.fixture(scope="module")
def docstring_pairs(tmp_path_factory):
    """A pairs CSV of real (docstring summary, code) pairs from the json package."""
    import json as json_module
    from pathlib import Path

    from contrastkit.data.codesearch import collect_code_pairs

    pairs, _ = collect_code_pairs([Path(json_module.__file__).parent])
    path = tmp_path_factory.mktemp("pairs") / "pairs.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["query", "code"])
        writer.writerows(zip(pairs.a, pairs.b, strict=True))
    return path, len(pairs)


def test_cocosoda_trains_minilm_on_a_pairs_csv(docstring_pairs, tmp_path, capsys):
    path, n = docstring_pairs
    assert n >= 10
    out = tmp_path / "cocosoda"
    code, _, err = _cli(
        capsys,
        "fit",
        "--config",
        "cocosoda",
        "--data",
        f"pairs:{path}",
        "--out",
        out,
        "--threads",
        1,
        "towers.steps=2",
        "towers.batch_size=4",
        "towers.max_length_b=32",
        "towers.eval_max_length=32",
        "objective.options.queue_size=8",
    )
    assert code == 0, err
    results = json.loads(RunDir(out).results_path.read_text())
    for key in ("a_to_b/mrr", "b_to_a/mrr", "a_to_b/recall@1", "a_to_b/recall@10"):
        assert 0 < results[key] <= 1
    assert results["a_to_b/recall@1"] <= results["a_to_b/recall@10"]


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["towers.step=3"], "did you mean 'steps'"),
        (["objective.name=ntxent"], "set objective.name: clip"),
        (["objective.options.uniformty=true"], "did you mean 'uniformity'"),
        (["--epochs", "3"], "towers.steps"),
        (["towers.b=efficientnet-lite0"], "holds text"),
        (["--data", "pairs:/nonexistent.csv"], "nonexistent"),
    ],
)
def test_bad_two_tower_configs_fail_before_anything_is_written(args, phrase, tmp_path, capsys):
    out = tmp_path / "bad"
    code, _, err = _cli(
        capsys,
        "fit",
        "--config",
        "clip",
        "--out",
        out,
        "towers.steps=1",
        "towers.max_train_pairs=16",
        "towers.max_test_pairs=16",
        "towers.feature_cache=null",
        *args,
    )
    assert code == 2 and phrase in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_two_tower_recipes_load():
    for recipe in ("clip", "clip-gap", "clip-code", "convirt", "cocosoda", "simcse", "whitenedcse"):
        config = load_config(recipe)
        assert config.objective.name == config.method
        TowerOptions.from_dict(dict(config.towers))
