"""Token-sequence views: CoCoSoDa's soft data augmentation (Shi et al. 2023, §3.2; spec B §11).

All functions work on whole :class:`~contrastkit.nn.text.Tokens` batches on their device and draw
from ``generator`` (a ``torch.Generator`` on that device; ``None`` uses torch's global RNG), so a
seeded generator reproduces a view exactly. Only *ordinary* tokens are ever changed: not special
or pad (``Tokens.special_mask``, which :func:`~contrastkit.nn.text.tokenize` fills), not before
position ``start`` (CoCoSoDa skips its 3-token prefix with ``start=3``). Inputs are never modified.

- :func:`mask_tokens`: BERT's dynamic masking as used by CoCoSoDa (Devlin et al. 2019, §3.1):
  each ordinary token is chosen with probability ``p``; a chosen token becomes ``mask_id`` (80%),
  a random ordinary id (10%) or stays (10%), so about ``0.9·p`` of ordinary tokens change.
- :func:`replace_tokens`: each chosen ordinary token becomes a random ordinary id.
- :class:`TokenViews`: the two composed.

SimCSE's views (Gao et al. 2021) change no token: they are the same :class:`Tokens` passed twice
through a tower in ``.train()`` mode, the two dropout masks being the augmentation. CoCoSoDa's
"replace with type tokens" is a no-op as released (spec B §11f) and is not offered.

Random ids are drawn uniformly from the ids in ``[0, vocab_size)`` that are *not* excluded: by
default the ids found at special positions of the batch (CLS/SEP/pad, …) plus ``mask_id``; pass
the tokenizer's ``all_special_ids`` (e.g. ``PretrainedTextTower.special_ids``) as ``exclude_ids``
to also exclude special tokens absent from the batch (``[UNK]``). BERT and CoCoSoDa's code draw
from the whole vocabulary instead, which can insert special tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.nn.text import Tokens

__all__ = ["TokenViews", "mask_tokens", "replace_tokens"]


def _probability(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ContrastkitError(f"{what} must be a probability in [0, 1], got {value!r}.")
    return float(value)


def _start(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ContrastkitError(f"start must be a non-negative integer position, got {value!r}.")
    return value


def _id(what: str, value: Any, vocab_size: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab_size:
        raise ContrastkitError(
            f"{what} must be a token id in [0, vocab_size={vocab_size}), got {value!r}."
        )
    return value


def _check(tokens: Any, vocab_size: Any, generator: torch.Generator | None, where: str) -> Tensor:
    """Validate the common arguments; return the bool mask of ordinary (changeable) tokens."""
    if not isinstance(tokens, Tokens):
        raise ContrastkitError(
            f"{where} expects a Tokens batch, got {type(tokens).__name__}; build it with tokenize()."
        )
    if tokens.special_mask is None:
        raise ContrastkitError(
            f"{where} needs Tokens.special_mask to know which tokens are special; build the "
            "Tokens with tokenize() or pass special_mask=... (True on special and pad tokens)."
        )
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
        raise ContrastkitError(f"vocab_size must be an integer of at least 2, got {vocab_size!r}.")
    if generator is not None and (
        not isinstance(generator, torch.Generator) or generator.device != tokens.device
    ):
        where_gen = generator.device if isinstance(generator, torch.Generator) else generator
        raise ContrastkitError(
            f"{where} needs a torch.Generator on the tokens' device {tokens.device}, got "
            f"{where_gen!r}; create it with torch.Generator(device=tokens.device)."
        )
    return ~tokens.special_mask & (tokens.attention_mask != 0)


def _candidates(ordinary: Tensor, start: int) -> Tensor:
    positions = torch.arange(ordinary.shape[1], device=ordinary.device)
    return ordinary & (positions >= start)


def _exclusions(exclude_ids: Any) -> Tensor:
    """``exclude_ids`` as a 1-D long tensor of non-negative ids (error otherwise)."""
    if isinstance(exclude_ids, Tensor):
        ok = not exclude_ids.is_floating_point() and exclude_ids.dtype != torch.bool
        ids = exclude_ids.reshape(-1).long() if ok else exclude_ids
    else:
        items = list(exclude_ids) if isinstance(exclude_ids, Sequence) else [exclude_ids]
        ok = all(isinstance(i, int) and not isinstance(i, bool) for i in items)
        ids = torch.tensor(items if ok else [], dtype=torch.long)
    if not ok or bool((ids < 0).any()):
        raise ContrastkitError(
            f"exclude_ids must be a list or integer tensor of non-negative token ids, got "
            f"{exclude_ids!r}."
        )
    return ids


def _allowed_ids(
    tokens: Tokens, vocab_size: int, exclude_ids: Sequence[int] | Tensor | None, extra: list[int]
) -> Tensor:
    """Sorted ids a random replacement may take: ``[0, vocab_size)`` minus the excluded ones."""
    allowed = torch.ones(vocab_size, dtype=torch.bool, device=tokens.device)
    if exclude_ids is None:
        assert tokens.special_mask is not None
        seen = tokens.input_ids[tokens.special_mask]
        allowed[seen[(seen >= 0) & (seen < vocab_size)]] = False
    else:
        excluded = _exclusions(exclude_ids).to(tokens.device)
        if excluded.numel() and not bool((excluded < vocab_size).all()):
            raise ContrastkitError(
                f"exclude_ids must be token ids in [0, vocab_size={vocab_size}), got "
                f"{excluded.tolist()}."
            )
        allowed[excluded] = False
    allowed[extra] = False
    ids = allowed.nonzero().squeeze(1)
    if ids.numel() == 0:
        raise ContrastkitError(
            f"Every id of the vocabulary (size {vocab_size}) is excluded, so no random "
            "replacement exists; exclude fewer ids or set random_fraction=0."
        )
    return ids


def _random_ids(allowed: Tensor, shape: torch.Size, generator: torch.Generator | None) -> Tensor:
    """Ids drawn uniformly from ``allowed`` (index draw, then lookup: exact uniformity)."""
    index = torch.randint(
        len(allowed), shape, generator=generator, device=allowed.device, dtype=torch.long
    )
    return allowed[index]


def mask_tokens(
    tokens: Tokens,
    *,
    mask_id: int,
    vocab_size: int,
    probability: float = 0.1,
    start: int = 0,
    generator: torch.Generator | None = None,
    mask_fraction: float = 0.8,
    random_fraction: float = 0.1,
    exclude_ids: Sequence[int] | Tensor | None = None,
) -> Tokens:
    """Dynamic masking (BERT §3.1; CoCoSoDa's soft augmentation case 0, spec B §11b).

    Each ordinary token at a position ``≥ start`` is chosen with ``probability``; of the chosen,
    ``mask_fraction`` become ``mask_id``, ``random_fraction`` a random allowed id (see the module
    docstring for ``exclude_ids``) and the rest stay. Positions turned into ``mask_id`` are marked
    in the result's ``special_mask`` ([MASK] is a special token), so later views leave them alone.
    Three draws of ``[B, L]`` are made whatever the values, keeping the generator's stream aligned.
    """
    ordinary = _check(tokens, vocab_size, generator, "mask_tokens")
    p = _probability("probability", probability)
    mask_fraction = _probability("mask_fraction", mask_fraction)
    random_fraction = _probability("random_fraction", random_fraction)
    if mask_fraction + random_fraction > 1 + 1e-12:
        raise ContrastkitError(
            f"mask_fraction + random_fraction must be at most 1, got {mask_fraction} + "
            f"{random_fraction}; the rest of the chosen tokens stay unchanged."
        )
    mask_id = _id("mask_id", mask_id, vocab_size)
    start = _start(start)
    chosen = _candidates(ordinary, start)
    shape, device = tokens.input_ids.shape, tokens.device
    chosen = chosen & (torch.rand(shape, generator=generator, device=device) < p)
    u = torch.rand(shape, generator=generator, device=device)
    to_mask = chosen & (u < mask_fraction)
    to_random = chosen & (u >= mask_fraction) & (u < mask_fraction + random_fraction)
    allowed = _allowed_ids(tokens, vocab_size, exclude_ids, [mask_id])
    random_ids = _random_ids(allowed, shape, generator)
    ids = torch.where(to_mask, torch.full_like(tokens.input_ids, mask_id), tokens.input_ids)
    ids = torch.where(to_random, random_ids, ids)
    assert tokens.special_mask is not None
    return Tokens(ids, tokens.attention_mask, tokens.special_mask | to_mask)


def replace_tokens(
    tokens: Tokens,
    *,
    vocab_size: int,
    probability: float,
    start: int = 0,
    generator: torch.Generator | None = None,
    exclude_ids: Sequence[int] | Tensor | None = None,
) -> Tokens:
    """Random replacement: each ordinary token at a position ``≥ start`` is replaced, with
    ``probability``, by an id drawn uniformly from the allowed ids (module docstring); a draw may
    repeat the original id (probability ``1/#allowed``)."""
    ordinary = _check(tokens, vocab_size, generator, "replace_tokens")
    p = _probability("probability", probability)
    start = _start(start)
    shape, device = tokens.input_ids.shape, tokens.device
    chosen = _candidates(ordinary, start)
    chosen = chosen & (torch.rand(shape, generator=generator, device=device) < p)
    random_ids = _random_ids(_allowed_ids(tokens, vocab_size, exclude_ids, []), shape, generator)
    return Tokens(
        torch.where(chosen, random_ids, tokens.input_ids),
        tokens.attention_mask,
        tokens.special_mask,
    )


class TokenViews(nn.Module):
    """CoCoSoDa's soft data augmentation: :func:`mask_tokens` then :func:`replace_tokens`.

    ``mask_probability`` (CoCoSoDa's ``mlm_probability``, 0.1) drives the 80/10/10 dynamic
    masking; ``replace_probability`` (default 0: off, as in CoCoSoDa's masking case) then
    replaces remaining ordinary tokens; ``start`` skips a prefix (CoCoSoDa: 3). ``exclude_ids``:
    ids random replacements never take (default: the batch's special ids and ``mask_id``).
    With both probabilities 0 the input is returned unchanged — SimCSE's setting, where the
    views come from dropout in the tower.
    """

    def __init__(
        self,
        mask_probability: float = 0.1,
        replace_probability: float = 0.0,
        start: int = 0,
        exclude_ids: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.mask_probability = _probability("mask_probability", mask_probability)
        self.replace_probability = _probability("replace_probability", replace_probability)
        self.start = _start(start)
        self.exclude_ids = None if exclude_ids is None else _exclusions(exclude_ids).tolist()

    def forward(
        self,
        tokens: Tokens,
        mask_id: int,
        vocab_size: int,
        generator: torch.Generator | None = None,
    ) -> Tokens:
        _check(tokens, vocab_size, generator, "TokenViews")
        mask_id = _id("mask_id", mask_id, vocab_size)
        if self.mask_probability == 0 and self.replace_probability == 0:
            return tokens
        # One exclusion list for both steps, fixed before masking adds [MASK] tokens.
        if self.exclude_ids is None:
            assert tokens.special_mask is not None
            exclude = torch.unique(tokens.input_ids[tokens.special_mask]).tolist()
        else:
            exclude = list(self.exclude_ids)
        exclude.append(mask_id)
        if self.mask_probability > 0:
            tokens = mask_tokens(
                tokens,
                mask_id=mask_id,
                vocab_size=vocab_size,
                probability=self.mask_probability,
                start=self.start,
                generator=generator,
                exclude_ids=exclude,
            )
        if self.replace_probability > 0:
            tokens = replace_tokens(
                tokens,
                vocab_size=vocab_size,
                probability=self.replace_probability,
                start=self.start,
                generator=generator,
                exclude_ids=exclude,
            )
        return tokens

    def extra_repr(self) -> str:
        return (
            f"mask_probability={self.mask_probability}, "
            f"replace_probability={self.replace_probability}, start={self.start}"
        )
