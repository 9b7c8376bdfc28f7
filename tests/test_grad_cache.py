"""The gradient cache gives the plain step's gradients with one chunk's activations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from contrastkit.errors import ContrastkitError
from contrastkit.functional import Pairs, info_nce
from contrastkit.methods.grad_cache import grad_cache_backward

torch.set_num_threads(1)
B, CHUNK = 12, 5


def setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.3), nn.ReLU(), nn.Linear(16, 8)).double()
    temperature = nn.Parameter(torch.tensor(0.2, dtype=torch.float64))  # a learnable loss parameter
    inputs = torch.randn(2 * B, 6, dtype=torch.float64)

    def encode(x):  # randomness inside: a random view and dropout
        return model(x + 0.1 * torch.randn_like(x))

    def loss_fn(z):
        return info_nce(z, Pairs.views(B), temperature=1.0, normalize=True) / temperature

    return model, temperature, inputs, encode, loss_fn


def gradients(model, temperature):
    return [p.grad.clone() for p in model.parameters()] + [temperature.grad.clone()]


def test_equals_the_plain_step():
    model, temperature, inputs, encode, loss_fn = setup()
    torch.manual_seed(1)
    plain = loss_fn(torch.cat([encode(c) for c in inputs.split(CHUNK)]))
    plain.backward()
    expected = gradients(model, temperature)

    model, temperature, inputs, encode, loss_fn = setup()
    torch.manual_seed(1)
    cached = grad_cache_backward(encode, inputs, loss_fn, CHUNK)
    torch.testing.assert_close(cached, plain.detach())
    for got, want in zip(gradients(model, temperature), expected, strict=True):
        torch.testing.assert_close(got, want)


def test_without_replayed_randomness_the_gradients_differ():
    """The check above can fail: re-embedding with fresh randomness gives other gradients."""
    model, temperature, inputs, encode, loss_fn = setup()
    torch.manual_seed(1)
    loss_fn(torch.cat([encode(c) for c in inputs.split(CHUNK)])).backward()
    expected = gradients(model, temperature)[0]

    model, temperature, inputs, encode, loss_fn = setup()
    torch.manual_seed(1)
    with torch.no_grad():
        z = torch.cat([encode(c) for c in inputs.split(CHUNK)])
    z.requires_grad_(True)
    loss_fn(z).backward()
    for chunk, grad in zip(inputs.split(CHUNK), z.grad.split(CHUNK), strict=True):
        encode(chunk).backward(grad)  # no replay
    assert not torch.allclose(gradients(model, temperature)[0], expected)


def test_bad_chunk_size():
    _, _, inputs, encode, loss_fn = setup()
    with pytest.raises(ContrastkitError, match="chunk_size"):
        grad_cache_backward(encode, inputs, loss_fn, 0)


def test_method_step_in_chunks_equals_the_plain_step_without_batch_statistics():
    from contrastkit.methods import ContrastiveMethod
    from contrastkit.nn import ProjectionHead
    from contrastkit.objectives import NTXentLoss
    from contrastkit.views import MultiView, build_augmentation

    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Dropout(0.2), nn.ReLU())
    head = ProjectionHead(32, hidden_dim=32, out_dim=16, batch_norm=False)
    views = MultiView(build_augmentation("small-gray", image_size=8, channels=1), n_views=2)
    method = ContrastiveMethod(backbone, head, NTXentLoss(0.2), views)
    x = torch.rand(10, 1, 8, 8)

    torch.manual_seed(3)
    plain = method.training_loss(x)
    plain.backward()
    expected = [p.grad.clone() for p in method.parameters()]
    method.zero_grad()
    torch.manual_seed(3)
    cached = method.backward_in_chunks(x, None, chunk_size=6)
    torch.testing.assert_close(cached, plain.detach())
    for p, want in zip(method.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, want)


def deterministic_method():
    from contrastkit.methods import ContrastiveMethod
    from contrastkit.nn import ProjectionHead
    from contrastkit.objectives import NTXentLoss
    from contrastkit.views import MultiView, build_augmentation

    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU())
    head = ProjectionHead(12, hidden_dim=12, out_dim=8, batch_norm=False)
    views = MultiView(build_augmentation("none", image_size=4, channels=1), n_views=2)
    return ContrastiveMethod(backbone, head, NTXentLoss(0.3), views).double()


GLOBAL_X = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def chunked_step_on_rank(rank: int) -> list[torch.Tensor]:
    from contrastkit.train.lightning_module import average_gradients

    method = deterministic_method()
    method.backward_in_chunks(GLOBAL_X[rank * 4 : (rank + 1) * 4], None, chunk_size=3)
    average_gradients(method.parameters(), world_size=2)
    return [p.grad.clone() for p in method.parameters()]


def test_gradient_cache_on_two_ranks_equals_one_process_on_the_whole_batch():
    """Chunked backward on each rank (candidates gathered from both) + averaged gradients =
    the plain step on the global batch: what training with train.grad_cache_chunk does under DDP."""
    from gloo import run_on_ranks

    ranks = run_on_ranks(chunked_step_on_rank)
    method = deterministic_method()
    method.training_loss(GLOBAL_X).backward()
    for rank in (0, 1):
        for got, p in zip(ranks[rank], method.parameters(), strict=True):
            torch.testing.assert_close(got, p.grad)


def test_fit_with_a_gradient_cache(tmp_path):
    import contrastkit as ck

    overrides = {
        "train.epochs": 1,
        "train.num_threads": 1,
        "train.progress_bar": False,
        "train.grad_cache_chunk": 100,
    }
    result = ck.fit(ck.load_config("simclr", overrides), out=tmp_path / "gc")
    assert result.metrics["linear_probe_accuracy"] > 0.5
    checkpoint = torch.load(tmp_path / "gc" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 1437 // 256  # the optimizer stepped once per batch
    with pytest.raises(ck.ContrastkitError, match="at least 1"):
        ck.fit(ck.load_config("simclr", {"train.grad_cache_chunk": 0}), out=tmp_path / "bad")
