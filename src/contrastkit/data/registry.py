"""Named data sources: ``load_data("npz:data.npz")`` dispatches on the prefix before ``:``."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from contrastkit.data.types import ImageData
from contrastkit.data.validate import check_options
from contrastkit.errors import ContrastkitError

__all__ = ["DEFAULT_SOURCE", "available_sources", "closest", "load_data", "register_source"]

DEFAULT_SOURCE = "digits"


@dataclass(frozen=True)
class _Source:
    loader: Callable[..., ImageData]
    examples: tuple[str, ...]


_SOURCES: dict[str, _Source] = {}


def register_source(
    prefix: str, loader: Callable[..., ImageData], *, examples: Sequence[str] | None = None
) -> None:
    """Register ``loader`` for specs ``prefix`` and ``prefix:ARG`` (re-registering replaces it).

    ``loader(arg, *, seed, test_fraction, image_size, download)`` gets ``arg=None`` for a bare
    ``prefix`` and the text after the first ``:`` otherwise (``""`` for ``prefix:``); options are
    already validated. ``examples`` are the spellings :func:`available_sources` lists
    (default: ``[prefix]``; e.g. ``["npz:PATH"]``).
    """
    key = prefix.strip().lower() if isinstance(prefix, str) else ""
    if not key or ":" in key:
        raise ContrastkitError(
            f"A data source prefix must be a non-empty name without ':', got {prefix!r}."
        )
    if not callable(loader):
        raise ContrastkitError(f"The loader for data source {key!r} must be callable.")
    _SOURCES[key] = _Source(loader, tuple(examples) if examples else (key,))


def available_sources() -> list[str]:
    """The spec spellings of every registered source, e.g. ``["digits", ..., "npz:PATH"]``."""
    return [example for source in _SOURCES.values() for example in source.examples]


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most similar to ``name`` (difflib), or ``None`` when nothing is close."""
    match = difflib.get_close_matches(name.lower(), list(candidates), n=1, cutoff=0.5)
    return match[0] if match else None


def load_data(
    spec: str = DEFAULT_SOURCE,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    image_size: int | None = None,
    download: bool = False,
) -> ImageData:
    """Load the data source named by ``spec`` (see :func:`available_sources`).

    ``seed``/``test_fraction`` drive the split of sources without a fixed one; ``image_size``
    resizes (shorter side, then center crop) to square images of that size; ``download`` lets
    sources that need the internet fetch their files.
    """
    check_options(seed=seed, test_fraction=test_fraction, image_size=image_size)
    if not isinstance(spec, str) or not spec.strip():
        raise ContrastkitError(
            f"The data source must be a non-empty name such as {DEFAULT_SOURCE!r}, got {spec!r}."
        )
    prefix, sep, arg = spec.strip().partition(":")
    source = _SOURCES.get(prefix.strip().lower())
    if source is None:
        raise ContrastkitError(_unknown_message(spec.strip()))
    return source.loader(
        arg.strip() if sep else None,
        seed=int(seed),
        test_fraction=float(test_fraction),
        image_size=None if image_size is None else int(image_size),
        download=bool(download),
    )


def _unknown_message(spec: str) -> str:
    path = Path(spec).expanduser()
    if path.is_dir() or path.suffix.lower() == ".npz":
        guess = f"{'folder' if path.is_dir() else 'npz'}:{spec}"
    else:
        # Match bare names too: "cifar10" -> "torchvision:cifar10", "folder" -> "folder:PATH".
        aliases = {}
        for example in available_sources():
            aliases[example] = example
            for part in example.split(":"):
                if not part.isupper():  # skip placeholders such as PATH
                    aliases.setdefault(part.lower(), example)
        match = closest(spec, aliases)
        guess = aliases[match] if match else None
    hint = f" (did you mean {guess!r}?)" if guess else ""
    return f"Unknown data source {spec!r}{hint}; use one of: {', '.join(available_sources())}."
