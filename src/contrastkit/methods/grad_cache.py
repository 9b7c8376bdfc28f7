"""Large batches on small memory: the gradient cache (Gao et al. 2021, "Scaling Deep Contrastive
Learning Batch Size under Memory Limited Setup", Alg. 1).

Pass 1 embeds the batch chunk by chunk without a graph; the loss is computed on all embeddings and
its gradient with respect to them is cached; pass 2 re-embeds each chunk with a graph and
back-propagates the cached gradient. Activation memory is that of one chunk; the parameter
gradients equal those of the plain step, because each chunk's random state (dropout, random
views made inside ``encode``) is recorded in pass 1 and replayed in pass 2. Batch statistics
(BatchNorm in train mode) are per chunk, as in any chunked forward.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from contrastkit.errors import ContrastkitError


def grad_cache_backward(
    encode: Callable[[Tensor], Tensor],
    inputs: Tensor,
    loss_fn: Callable[[Tensor], Tensor],
    chunk_size: int,
) -> Tensor:
    """Back-propagate ``loss_fn(cat(encode(chunk) for chunk in inputs.split(chunk_size)))`` into
    the parameters of ``encode`` (and of ``loss_fn``), one chunk's activations at a time.

    Returns the loss, detached; gradients are accumulated into ``.grad`` as by ``.backward()``.
    """
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ContrastkitError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    chunks = inputs.split(chunk_size)
    states, embeddings = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(_rng_state(chunk.device))
            embeddings.append(encode(chunk))
    cached = torch.cat(embeddings).requires_grad_(True)
    loss = loss_fn(cached)
    loss.backward()  # gradient w.r.t. the embeddings (and any parameters of the loss)
    for chunk, state, grad in zip(chunks, states, cached.grad.split(chunk_size), strict=True):
        with torch.random.fork_rng(devices=[chunk.device] if chunk.device.type == "cuda" else []):
            _set_rng_state(state, chunk.device)
            encode(chunk).backward(grad)
    return loss.detach()


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[Tensor, Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)
