"""Text tokenisation with CLIP's BPE tokenizer (shipped inside open_clip, nothing is downloaded)."""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import open_clip
import torch


@lru_cache(maxsize=1)
def get_tokenizer() -> open_clip.tokenizer.SimpleTokenizer:
    """The CLIP RN50 tokenizer, built once per process."""
    return open_clip.get_tokenizer("RN50")


def tokenize(texts: str | Sequence[str], word_len: int = 77) -> torch.LongTensor:
    """Tokenise one text or a batch into ``(N, word_len)`` long token ids, zero padded.

    Each row is ``<start_of_text> ... <end_of_text> 0 ...``. Longer texts are truncated to
    ``word_len`` tokens with the end-of-text token kept as the last one, so the model's
    argmax pooling (the end-of-text id is the largest) still finds it.
    """
    if word_len < 2:
        raise ValueError(f"word_len must hold at least the start and end tokens, got {word_len}")
    if isinstance(texts, str):
        texts = [texts]
    return get_tokenizer()(list(texts), context_length=word_len)


def used_length(padding_mask: torch.Tensor) -> int:
    """Columns of a ``(B, L)`` padding mask (True = padding) up to the last one any row uses; at least 1."""
    used = (~padding_mask).any(dim=0).nonzero()
    return int(used.max()) + 1 if len(used) else 1


def trim_padding(tokens: torch.Tensor) -> torch.Tensor:
    """``tokens (B, L)`` cut after the longest row's last token (zero padding dropped).

    CLIP's text encoder is causal, so every kept token's features are those of the full-length batch.
    """
    return tokens[:, : used_length(tokens == 0)]
