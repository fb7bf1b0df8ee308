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
