"""Tests for contrastkit.nn.text: Tokens, tokenize, masked_mean, the MiniLM tower, TokenTower."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contrastkit.errors import ContrastkitError
from contrastkit.nn.text import (
    MINILM,
    PretrainedTextTower,
    Tokens,
    TokenTower,
    load_tokenizer,
    masked_mean,
    resolve_text_model,
    text_tower,
    tokenize,
)

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
]


@pytest.fixture(scope="module")
def minilm() -> PretrainedTextTower:
    return PretrainedTextTower(MINILM).eval()


def _embed(tower: nn.Module, tokens: Tokens) -> torch.Tensor:
    with torch.no_grad():
        return tower(tokens)


# ------------------------------------------------------------------------------------ pooling


def test_masked_mean_matches_a_loop() -> None:
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(4, 7, 5, generator=g, dtype=torch.float64)
    mask = torch.tensor(
        [[1, 1, 1, 0, 0, 0, 0], [1] * 7, [1, 0, 0, 0, 0, 0, 0], [0] * 7], dtype=torch.long
    )
    out = masked_mean(hidden, mask)
    for b in range(4):
        rows = [hidden[b, t] for t in range(7) if mask[b, t] == 1]
        expected = torch.stack(rows).mean(0) if rows else torch.zeros(5, dtype=torch.float64)
        torch.testing.assert_close(out[b], expected, rtol=0, atol=1e-12)
    # Bool masks and float masks mean the same thing.
    torch.testing.assert_close(masked_mean(hidden, mask.bool()), out, rtol=0, atol=0)


def test_masked_mean_gradient() -> None:
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(3, 4, 2, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    assert torch.autograd.gradcheck(lambda h: masked_mean(h, mask), (hidden,))
    masked_mean(hidden, mask).sum().backward()
    # d/dh of a mean over n real tokens is 1/n on them and 0 on padding.
    expected = (mask / mask.sum(1, keepdim=True)).unsqueeze(-1).expand(-1, -1, 2)
    torch.testing.assert_close(hidden.grad, expected.double(), rtol=0, atol=1e-12)


def test_masked_mean_errors() -> None:
    with pytest.raises(ContrastkitError, match=r"\[B, L, D\]"):
        masked_mean(torch.zeros(2, 3), torch.ones(2, 3))
    with pytest.raises(ContrastkitError, match="attention mask shaped"):
        masked_mean(torch.zeros(2, 3, 4), torch.ones(2, 4))


# ------------------------------------------------------------------------------------ tokens


def _tokens(ids: list[list[int]], pad: int = 0) -> Tokens:
    t = torch.tensor(ids)
    return Tokens(t, (t != pad).long(), t == pad)


def test_tokens_indexing_len_and_to() -> None:
    tok = _tokens([[5, 6, 0], [7, 0, 0], [8, 9, 10]])
    assert len(tok) == 3 and tok.device.type == "cpu"
    for index, rows in (
        (slice(1, 3), [1, 2]),
        (torch.tensor([2, 0]), [2, 0]),
        (torch.tensor([True, False, True]), [0, 2]),
        ([1], [1]),
        (1, [1]),
        (-1, [2]),
    ):
        sub = tok[index]
        assert torch.equal(sub.input_ids, tok.input_ids[rows])
        assert torch.equal(sub.attention_mask, tok.attention_mask[rows])
        assert sub.special_mask is not None and torch.equal(
            sub.special_mask, tok.special_mask[rows]
        )
    moved = tok.to("cpu")
    assert torch.equal(moved.input_ids, tok.input_ids) and moved.special_mask is not None
    assert Tokens(tok.input_ids, tok.attention_mask)[0:1].special_mask is None


def test_tokens_validation() -> None:
    ids = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ContrastkitError, match="integer tensor"):
        Tokens(ids.float(), ids)
    with pytest.raises(ContrastkitError, match="integer tensor"):
        Tokens(ids[0], ids[0])
    with pytest.raises(ContrastkitError, match="must match"):
        Tokens(ids, ids[:, :2])
    with pytest.raises(ContrastkitError, match="bool tensor"):
        Tokens(ids, ids, ids)
    with pytest.raises(ContrastkitError, match="bool tensor"):
        Tokens(ids, ids, torch.zeros(2, 2, dtype=torch.bool))
    with pytest.raises(ContrastkitError, match="indexed"):
        _ = Tokens(ids, ids)[torch.tensor([0.5])]


# --------------------------------------------------------------------------------- resolving


def test_resolve_text_model(tmp_path: Path) -> None:
    path = resolve_text_model(MINILM)
    assert (Path(path) / "config.json").is_file()
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert resolve_text_model(str(tmp_path)) == str(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ContrastkitError, match=r"no config\.json"):
        resolve_text_model(str(empty))
    with pytest.raises(ContrastkitError, match=r"never downloaded.*'minilm'"):
        resolve_text_model("bert-base-uncased")
    with pytest.raises(ContrastkitError, match="string"):
        resolve_text_model(3)  # type: ignore[arg-type]


def test_tokenize_special_mask_and_truncation() -> None:
    tokenizer = load_tokenizer()
    tok = tokenize(tokenizer, ["Hi", *SENTENCES])
    ids = tok.input_ids
    assert ids.dtype == torch.long and tok.attention_mask.dtype == torch.long
    assert tok.special_mask is not None
    # BERT: pad 0, [CLS] 101, [SEP] 102 are the only special tokens of plain text.
    assert torch.equal(tok.special_mask, torch.isin(ids, torch.tensor([0, 101, 102])))
    assert torch.equal(tok.attention_mask, (ids != 0).long())
    assert ids[0, :3].tolist() == [101, 7632, 102] and ids[0, 3:].eq(0).all()
    assert ids.shape[1] == int(tok.attention_mask.sum(1).max())  # padded to the longest
    short = tokenize(tokenizer, SENTENCES, max_length=5)
    assert short.input_ids.shape == (3, 5) and short.input_ids[:, -1].eq(102).all()


def test_tokenize_errors() -> None:
    tokenizer = load_tokenizer()
    with pytest.raises(ContrastkitError, match=r"wrap a single text"):
        tokenize(tokenizer, "A sentence.")
    with pytest.raises(ContrastkitError, match="empty list"):
        tokenize(tokenizer, [])
    with pytest.raises(ContrastkitError, match="item 1 is a int"):
        tokenize(tokenizer, ["a", 3])  # type: ignore[list-item]
    with pytest.raises(ContrastkitError, match="max_length"):
        tokenize(tokenizer, ["a"], max_length=0)
    with pytest.raises(ContrastkitError, match="tokenizer"):
        tokenize(None, ["a"])


# ---------------------------------------------------------------------------------- MiniLM


def test_minilm_properties(minilm: PretrainedTextTower) -> None:
    assert minilm.out_dim == 384
    assert (minilm.vocab_size, minilm.pad_id, minilm.mask_id) == (30522, 0, 103)
    assert minilm.special_ids == [0, 100, 101, 102, 103]
    assert not hasattr(minilm.model, "pooler") or minilm.model.pooler is None


def test_minilm_ranking_and_sentence_transformers(minilm: PretrainedTextTower) -> None:
    emb = F.normalize(_embed(minilm, minilm.tokenize(SENTENCES)), dim=1)
    assert emb.shape == (3, 384)
    sim = emb @ emb.T
    # all-MiniLM-L6-v2's model card example: the two eating sentences are close (≈0.76),
    # the baby sentence is not (≈-0.1).
    assert sim[0, 1] > 0.6 and sim[0, 2] < 0.2 and sim[1, 2] < 0.2
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return
    reference = SentenceTransformer(minilm.name_or_path, device="cpu").encode(
        SENTENCES, convert_to_tensor=True
    )
    torch.testing.assert_close(emb, reference.cpu(), rtol=0, atol=1e-5)


def test_minilm_padding_invariance(minilm: PretrainedTextTower) -> None:
    alone = _embed(minilm, minilm.tokenize(SENTENCES[:1]))
    long_text = "A much longer sentence that forces several padding tokens after the short one."
    batch = minilm.tokenize([SENTENCES[0], long_text])
    assert int(batch.attention_mask[0].sum()) < batch.input_ids.shape[1]
    torch.testing.assert_close(_embed(minilm, batch)[:1], alone, rtol=0, atol=1e-5)


def test_minilm_cls_pooling(minilm: PretrainedTextTower) -> None:
    tower = PretrainedTextTower(pooling="cls").eval()
    tok = tower.tokenize(SENTENCES)
    with torch.no_grad():
        hidden = minilm.model(
            input_ids=tok.input_ids, attention_mask=tok.attention_mask
        ).last_hidden_state
    torch.testing.assert_close(_embed(tower, tok), hidden[:, 0], rtol=0, atol=1e-6)
    torch.testing.assert_close(
        _embed(minilm, tok), masked_mean(hidden, tok.attention_mask), rtol=0, atol=1e-6
    )


def test_dropout_views_in_train_mode_only(minilm: PretrainedTextTower) -> None:
    tok = minilm.tokenize(SENTENCES[:2])
    minilm.train()
    try:
        with torch.no_grad():
            a, b = minilm(tok), minilm(tok)
    finally:
        minilm.eval()
    assert (a - b).abs().max() > 1e-3  # SimCSE: two dropout masks = two views
    assert F.cosine_similarity(a, b).min() > 0.8  # ... of the same sentence
    torch.testing.assert_close(_embed(minilm, tok), _embed(minilm, tok), rtol=0, atol=0)


def test_freeze_all_keeps_train_mode_dropout() -> None:
    tower = text_tower(MINILM, freeze=True)
    assert isinstance(tower, PretrainedTextTower)
    assert not any(p.requires_grad for p in tower.parameters())
    tok = tower.tokenize(SENTENCES[:2])
    a, b = tower(tok), tower(tok)  # train mode (the default after construction)
    assert not a.requires_grad
    assert (a - b).abs().max() > 1e-3


def test_freeze_first_layers_and_gradients() -> None:
    tower = PretrainedTextTower(freeze=2)
    model = tower.model
    assert not any(p.requires_grad for p in model.embeddings.parameters())
    for i, layer in enumerate(model.encoder.layer):
        assert all(p.requires_grad == (i >= 2) for p in layer.parameters())
    tower(tower.tokenize(SENTENCES[:2])).pow(2).sum().backward()
    for name, p in tower.named_parameters():
        frozen = name.startswith(
            ("model.embeddings", "model.encoder.layer.0.", "model.encoder.layer.1.")
        )
        assert (p.grad is None) == frozen, name
        if not frozen:
            assert torch.isfinite(p.grad).all()
    assert (
        PretrainedTextTower(freeze=6).model.encoder.layer[5].output.dense.weight.requires_grad
        is False
    )
    for bad in (7, -1):
        with pytest.raises(ContrastkitError, match="between 0 and"):
            PretrainedTextTower(freeze=bad)
    with pytest.raises(ContrastkitError, match="freeze must be"):
        PretrainedTextTower(freeze=1.5)  # type: ignore[arg-type]


def test_gradient_checkpointing_gives_the_same_values_and_gradients() -> None:
    def run(checkpointing: bool) -> tuple[torch.Tensor, torch.Tensor]:
        tower = PretrainedTextTower(freeze=3, gradient_checkpointing=checkpointing)
        for m in tower.modules():  # train mode (checkpointing is active) without dropout noise
            if isinstance(m, nn.Dropout):
                m.p = 0.0
        calls = []
        tower.model.encoder.layer[4].attention.register_forward_pre_hook(lambda *_: calls.append(1))
        out = tower(tower.tokenize(SENTENCES[:2]))
        out.pow(2).sum().backward()
        assert len(calls) == (2 if checkpointing else 1)  # recomputed in backward
        return out.detach(), tower.model.encoder.layer[4].output.dense.weight.grad

    plain, checkpointed = run(False), run(True)
    torch.testing.assert_close(checkpointed[0], plain[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(checkpointed[1], plain[1], rtol=1e-4, atol=1e-5)


def test_deepcopy_for_momentum_encoders(minilm: PretrainedTextTower) -> None:
    clone = copy.deepcopy(minilm)
    assert clone.model is not minilm.model
    tok = minilm.tokenize(SENTENCES[:1])
    torch.testing.assert_close(_embed(clone, tok), _embed(minilm, tok), rtol=0, atol=0)


def test_pretrained_tower_errors(minilm: PretrainedTextTower) -> None:
    tok = minilm.tokenize(SENTENCES[:1])
    with pytest.raises(ContrastkitError, match="Tokens batch"):
        minilm(tok.input_ids)
    with pytest.raises(ContrastkitError, match="vocabulary has 30522"):
        minilm(Tokens(tok.input_ids + 30522, tok.attention_mask))
    long = torch.ones(1, 513, dtype=torch.long)
    with pytest.raises(ContrastkitError, match="at most 512"):
        minilm(Tokens(long, long))
    with pytest.raises(ContrastkitError, match="all zero"):
        minilm(Tokens(tok.input_ids, torch.zeros_like(tok.attention_mask)))
    with pytest.raises(ContrastkitError, match="Unknown pooling 'max'"):
        PretrainedTextTower(pooling="max")
    with pytest.raises(ContrastkitError, match="did you mean 'minilm'"):
        text_tower("minilmm")
    with pytest.raises(ContrastkitError, match="local directory"):
        text_tower("./no/such/model")
    with pytest.raises(ContrastkitError, match="rejected its options"):
        text_tower("tokens", vocab_size=10, size=3)


# ------------------------------------------------------------------------------- TokenTower


def _random_tokens(b: int, lengths: list[int], width: int, vocab: int, seed: int = 0) -> Tokens:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (b, width), generator=g)
    mask = (torch.arange(width) < torch.tensor(lengths)[:, None]).long()
    return Tokens(ids * mask, mask, mask == 0)


def test_token_tower_shapes_and_padding_invariance() -> None:
    torch.manual_seed(0)
    tower = text_tower("tokens", vocab_size=50, dim=32, layers=2, heads=4, max_length=16).eval()
    assert isinstance(tower, TokenTower) and tower.out_dim == 32
    tok = _random_tokens(3, [5, 8, 2], 8, 50)
    out = _embed(tower, tok)
    assert out.shape == (3, 32) and torch.isfinite(out).all()
    # Extra right padding, garbage ids under padding, and left padding change nothing.
    pad = torch.zeros(3, 6, dtype=torch.long)
    wider = Tokens(torch.cat([tok.input_ids, pad], 1), torch.cat([tok.attention_mask, pad], 1))
    torch.testing.assert_close(_embed(tower, wider), out, rtol=0, atol=1e-5)
    garbage = torch.where(
        wider.attention_mask == 0, torch.randint(0, 50, wider.input_ids.shape), wider.input_ids
    )
    torch.testing.assert_close(
        _embed(tower, Tokens(garbage, wider.attention_mask)), out, rtol=0, atol=1e-5
    )
    row = 2  # length 2: move its tokens to the right end
    left = Tokens(
        tok.input_ids[row : row + 1].roll(6, 1), tok.attention_mask[row : row + 1].roll(6, 1)
    )
    torch.testing.assert_close(_embed(tower, left), out[row : row + 1], rtol=0, atol=1e-5)
    # Token order matters (positions are used): reversing a sequence changes its embedding.
    rev = Tokens(tok.input_ids[1:2].flip(1), tok.attention_mask[1:2])
    assert (_embed(tower, rev) - out[1:2]).abs().max() > 1e-3


def test_token_tower_dropout_and_gradients() -> None:
    torch.manual_seed(1)
    tower = TokenTower(vocab_size=40, dim=16, layers=2, heads=2, max_length=8, dropout=0.1)
    tok = _random_tokens(4, [3, 8, 6, 1], 8, 40)
    a = tower(tok)
    assert (a - tower(tok)).abs().max() > 1e-4  # dropout views in train mode
    a.pow(2).sum().backward()
    for name, p in tower.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert tower.token_embedding.weight.grad[0].abs().sum() == 0  # pad row never trains
    tower.eval()
    torch.testing.assert_close(_embed(tower, tok), _embed(tower, tok), rtol=0, atol=0)


def test_token_tower_errors() -> None:
    tower = TokenTower(vocab_size=20, dim=8, layers=1, heads=2, max_length=4)
    ok = _random_tokens(2, [2, 4], 4, 20)
    with pytest.raises(ContrastkitError, match="max_length=4"):
        tower(_random_tokens(2, [2, 5], 5, 20))
    with pytest.raises(ContrastkitError, match="vocabulary has 20 ids"):
        tower(Tokens(ok.input_ids + 20, ok.attention_mask))
    with pytest.raises(ContrastkitError, match=r"in \[-1, "):
        tower(Tokens(ok.input_ids - 1, ok.attention_mask))
    with pytest.raises(ContrastkitError, match="all zero"):
        tower(Tokens(ok.input_ids, ok.attention_mask * 0))
    with pytest.raises(ContrastkitError, match="Tokens batch"):
        tower(ok.input_ids)
    with pytest.raises(ContrastkitError, match="divisible"):
        TokenTower(vocab_size=20, dim=10, heads=4)
    with pytest.raises(ContrastkitError, match="pad_id"):
        TokenTower(vocab_size=20, pad_id=20)
    with pytest.raises(ContrastkitError, match="dropout"):
        TokenTower(vocab_size=20, dropout=1.0)
    with pytest.raises(ContrastkitError, match="vocab_size must be a positive integer"):
        TokenTower(vocab_size=0)
