"""Tests for contrastkit.views.text: CoCoSoDa's dynamic masking and random token replacement."""

from __future__ import annotations

import math

import pytest
import torch

from contrastkit.errors import ContrastkitError
from contrastkit.nn.text import Tokens, load_tokenizer, tokenize
from contrastkit.views import TokenViews, mask_tokens, replace_tokens

torch.set_num_threads(1)

VOCAB, PAD, CLS, SEP, MASK = 1000, 0, 1, 2, 3
SPECIAL = [PAD, CLS, SEP, MASK]


def _batch(b: int, width: int, seed: int = 0) -> Tokens:
    """``[CLS] w… [SEP] [PAD]…`` rows of random lengths, words drawn from ids ≥ 4."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, width + 1, (b,), generator=g)
    pos = torch.arange(width)
    ids = torch.randint(4, VOCAB, (b, width), generator=g)
    ids[:, 0] = CLS
    ids = torch.where(pos == (lengths - 1)[:, None], SEP, ids)
    attention = (pos < lengths[:, None]).long()
    ids = ids * attention
    return Tokens(ids, attention, torch.isin(ids, torch.tensor(SPECIAL)))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _within(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    """``count`` is a plausible Binomial(n, p) draw."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


def _mask(tok: Tokens, seed: int, **kw: object) -> Tokens:
    kw = {"mask_id": MASK, "vocab_size": VOCAB, **kw}
    return mask_tokens(tok, generator=_gen(seed), **kw)  # type: ignore[arg-type]


def test_special_pad_and_prefix_tokens_never_change() -> None:
    tok = _batch(16, 24)
    special = tok.special_mask
    assert special is not None
    keep = special.clone()
    keep[:, :3] = True  # start=3: CoCoSoDa's prefix
    changed_somewhere = torch.zeros_like(special)
    for seed in range(60):
        for out in (
            _mask(tok, seed, probability=0.9, start=3),
            _mask(tok, seed, probability=1.0, start=3, mask_fraction=0.0, random_fraction=1.0),
            replace_tokens(tok, vocab_size=VOCAB, probability=1.0, start=3, generator=_gen(seed)),
            TokenViews(0.5, 0.5, start=3)(tok, MASK, VOCAB, generator=_gen(seed)),
        ):
            assert torch.equal(out.input_ids[keep], tok.input_ids[keep])
            assert torch.equal(out.attention_mask, tok.attention_mask)
            changed_somewhere |= out.input_ids != tok.input_ids
            # Random replacements never produce special ids.
            new = out.input_ids[out.input_ids != tok.input_ids]
            assert not torch.isin(new[new != MASK], torch.tensor(SPECIAL)).any()
    # ... while every ordinary position at or after start did change at some point.
    assert torch.equal(changed_somewhere, ~keep)


def test_real_tokenizer_specials_untouched() -> None:
    tokenizer = load_tokenizer()
    tok = tokenize(tokenizer, ["def add(a, b): return a + b", "sum two numbers", "x"])
    specials = torch.tensor(tokenizer.all_special_ids)
    for seed in range(20):
        out = mask_tokens(
            tok,
            mask_id=tokenizer.mask_token_id,
            vocab_size=len(tokenizer),
            probability=1.0,
            generator=_gen(seed),
            exclude_ids=tokenizer.all_special_ids,
        )
        assert tok.special_mask is not None
        assert torch.equal(out.input_ids[tok.special_mask], tok.input_ids[tok.special_mask])
        new = out.input_ids[out.input_ids != tok.input_ids]
        assert not torch.isin(new[new != tokenizer.mask_token_id], specials).any()


@pytest.mark.parametrize("p", [0.1, 0.35])
def test_fractions_match_bert_dynamic_masking(p: float) -> None:
    """CoCoSoDa §11d test 4: ≈0.9·p of ordinary tokens change; of the chosen, 80% → [MASK]."""
    tok = _batch(400, 64, seed=1)
    out = _mask(tok, 7, probability=p)
    assert tok.special_mask is not None
    ordinary = ~tok.special_mask
    n = int(ordinary.sum())
    changed = out.input_ids != tok.input_ids
    masked = out.input_ids == MASK
    assert int(changed[~ordinary].sum()) == 0 and int(masked[~ordinary].sum()) == 0
    # A random draw equal to the original id (prob 1/996) does not count as a change.
    p_random = 0.1 * p * (1 - 1 / (VOCAB - len(SPECIAL)))
    assert _within(int(changed.sum()), n, 0.8 * p + p_random)
    assert _within(int(masked.sum()), n, 0.8 * p)
    assert _within(int((changed & ~masked).sum()), n, p_random)
    # Newly masked positions are marked special (so later views leave them alone).
    assert out.special_mask is not None
    assert torch.equal(out.special_mask, tok.special_mask | masked)


def test_limiting_cases() -> None:
    tok = _batch(32, 16)
    assert tok.special_mask is not None
    ordinary = ~tok.special_mask
    assert torch.equal(_mask(tok, 0, probability=0.0).input_ids, tok.input_ids)
    assert torch.equal(
        _mask(tok, 0, probability=1.0, mask_fraction=0.0, random_fraction=0.0).input_ids,
        tok.input_ids,
    )
    all_masked = _mask(tok, 0, probability=1.0, mask_fraction=1.0, random_fraction=0.0)
    assert torch.equal(all_masked.input_ids, torch.where(ordinary, MASK, tok.input_ids))
    assert torch.equal(
        replace_tokens(tok, vocab_size=VOCAB, probability=0.0, generator=_gen(0)).input_ids,
        tok.input_ids,
    )
    before = tok.input_ids.clone()
    _mask(tok, 0, probability=1.0)
    assert torch.equal(tok.input_ids, before)  # inputs are never modified in place
    assert TokenViews(0.0, 0.0)(tok, MASK, VOCAB) is tok  # SimCSE: no token change


def test_random_ids_are_uniform_over_allowed_ids() -> None:
    vocab = 12
    ids = torch.full((200, 50), 6)
    ids[:, 0] = 1
    tok = Tokens(ids, torch.ones_like(ids), ids == 1)
    out = replace_tokens(
        tok, vocab_size=vocab, probability=1.0, generator=_gen(3), exclude_ids=[0, 2, 5]
    )
    new = out.input_ids[:, 1:].reshape(-1)
    counts = torch.bincount(new, minlength=vocab)
    # Explicit exclude_ids replace the default (so the batch's special id 1 may be drawn here).
    assert counts[[0, 2, 5]].sum() == 0
    allowed = [i for i in range(vocab) if i not in (0, 2, 5)]
    expected = new.numel() / len(allowed)
    chi2 = float(((counts[allowed] - expected) ** 2 / expected).sum())
    assert chi2 < 30.0  # 8 degrees of freedom: P(chi2 > 30) ≈ 2e-4
    # Default exclusion: ids seen at special positions of the batch (here 1).
    default = replace_tokens(tok, vocab_size=vocab, probability=1.0, generator=_gen(4))
    assert not (default.input_ids[:, 1:] == 1).any()
    assert set(default.input_ids[:, 1:].unique().tolist()) == set(range(vocab)) - {1}
    # mask_tokens also never draws mask_id as a "random" token.
    masked = mask_tokens(
        tok,
        mask_id=4,
        vocab_size=vocab,
        probability=1.0,
        mask_fraction=0.0,
        random_fraction=1.0,
        generator=_gen(5),
    )
    assert not torch.isin(masked.input_ids[:, 1:], torch.tensor([1, 4])).any()


def test_reproducible_with_a_seeded_generator() -> None:
    tok = _batch(8, 20)
    a, b = _mask(tok, 11, probability=0.3), _mask(tok, 11, probability=0.3)
    assert torch.equal(a.input_ids, b.input_ids)
    assert not torch.equal(a.input_ids, _mask(tok, 12, probability=0.3).input_ids)
    views = TokenViews(0.3, 0.2)
    v1, v2 = (views(tok, MASK, VOCAB, generator=_gen(2)) for _ in range(2))
    assert torch.equal(v1.input_ids, v2.input_ids)
    torch.manual_seed(0)
    g1 = mask_tokens(tok, mask_id=MASK, vocab_size=VOCAB, probability=0.3).input_ids
    torch.manual_seed(0)
    g2 = mask_tokens(tok, mask_id=MASK, vocab_size=VOCAB, probability=0.3).input_ids
    assert torch.equal(g1, g2)  # generator=None: torch's global RNG


def test_token_views_compose_masking_then_replacement() -> None:
    tok = _batch(300, 40, seed=2)
    assert tok.special_mask is not None
    n = int((~tok.special_mask).sum())
    out = TokenViews(mask_probability=0.2, replace_probability=0.5)(
        tok, MASK, VOCAB, generator=_gen(9)
    )
    masked = out.input_ids == MASK
    # Masked tokens are not replaced afterwards: their share stays 0.8·0.2.
    assert _within(int(masked.sum()), n, 0.8 * 0.2)
    # Unmasked ordinary tokens are replaced with probability 0.5 by the second step (a tiny
    # share was already changed by the 10% random branch of the first).
    changed = (out.input_ids != tok.input_ids) & ~masked
    p_changed = 1 - (1 - 0.02 / (1 - 0.16)) * (1 - 0.5)
    assert _within(int(changed.sum()), n - int(masked.sum()), p_changed, sigmas=6)
    only_replace = TokenViews(0.0, 1.0)(tok, MASK, VOCAB, generator=_gen(9))
    assert not (only_replace.input_ids == MASK).any()  # mask_id is excluded from draws


def test_errors() -> None:
    tok = _batch(4, 8)
    with pytest.raises(ContrastkitError, match="special_mask"):
        mask_tokens(Tokens(tok.input_ids, tok.attention_mask), mask_id=MASK, vocab_size=VOCAB)
    with pytest.raises(ContrastkitError, match="Tokens batch"):
        mask_tokens(tok.input_ids, mask_id=MASK, vocab_size=VOCAB)  # type: ignore[arg-type]
    for kw, pattern in (
        ({"probability": 1.5}, "probability must be a probability"),
        ({"probability": -0.1}, "probability must be a probability"),
        ({"mask_fraction": 0.9, "random_fraction": 0.2}, "at most 1"),
        ({"start": -1}, "start must be"),
        ({"mask_id": VOCAB}, "mask_id must be a token id"),
        ({"vocab_size": 1}, "vocab_size must be"),
        ({"exclude_ids": [1.5]}, "exclude_ids must be"),
        ({"exclude_ids": [VOCAB]}, "exclude_ids must be token ids"),
        ({"exclude_ids": list(range(VOCAB))}, "Every id"),
        ({"generator": "seed"}, "torch.Generator"),
    ):
        with pytest.raises(ContrastkitError, match=pattern):
            mask_tokens(tok, **{"mask_id": MASK, "vocab_size": VOCAB, **kw})  # type: ignore[arg-type]
    with pytest.raises(ContrastkitError, match="probability must be"):
        replace_tokens(tok, vocab_size=VOCAB, probability=2)
    with pytest.raises(ContrastkitError, match="mask_probability"):
        TokenViews(mask_probability=1.1)
    with pytest.raises(ContrastkitError, match="replace_probability"):
        TokenViews(replace_probability=-1)
    with pytest.raises(ContrastkitError, match="start"):
        TokenViews(start=1.5)  # type: ignore[arg-type]
    with pytest.raises(ContrastkitError, match="mask_id"):
        TokenViews()(tok, -1, VOCAB)
