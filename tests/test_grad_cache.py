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
