"""Tokenizer: CLIP BPE via open_clip, padding, truncation that keeps the end-of-text token, real OPD sentences."""
import gzip
import json
from pathlib import Path

import pytest
import torch

from segaff_core.text import get_tokenizer, tokenize

OPD_ANNOTATIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "opd_annotations"
SOT, EOT = 49406, 49407


def _real_descriptions() -> list[str]:
    files = sorted(OPD_ANNOTATIONS.glob("*/MotionNet_*.json.gz"))
    if not files:
        pytest.skip(f"no real OPD annotation files under {OPD_ANNOTATIONS}")
    descriptions = set()
    for path in files:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            annotations = json.load(handle)["annotations"]
        descriptions.update(a["description"] for a in annotations if a.get("description"))
    return sorted(descriptions)


def test_single_text_layout():
    tokens = tokenize("Open the top drawer.")
    assert tokens.shape == (1, 77) and tokens.dtype == torch.long
    length = int((tokens[0] != 0).sum())
    assert tokens[0, 0] == SOT and tokens[0, length - 1] == EOT
    assert torch.all(tokens[0, length:] == 0)
    assert int(tokens[0].argmax()) == length - 1  # the model pools the argmax token


def test_batch_and_word_len():
    tokens = tokenize(["open the door", "pull the handle of the fridge"], word_len=17)
    assert tokens.shape == (2, 17)
    assert (tokens == EOT).sum(dim=1).tolist() == [1, 1]


def test_tokenizer_is_cached():
    assert get_tokenizer() is get_tokenizer()


def test_every_real_description_fits():
    descriptions = _real_descriptions()
    assert len(descriptions) > 1000
    tokens = tokenize(descriptions)
    lengths = (tokens != 0).sum(dim=1)
    assert int(lengths.max()) < 77, "a real description was truncated"
    rows = torch.arange(len(descriptions))
    assert torch.all(tokens[:, 0] == SOT)
    assert torch.all(tokens[rows, lengths - 1] == EOT)
    assert torch.all((tokens == EOT).sum(dim=1) == 1)


def test_long_sentence_truncated_with_eot_last():
    sentence = " ".join(["open the left cabinet door"] * 40)  # 200 words
    tokens = tokenize(sentence)
    assert tokens.shape == (1, 77)
    assert torch.all(tokens != 0)
    assert tokens[0, 0] == SOT and tokens[0, -1] == EOT
    assert int((tokens == EOT).sum()) == 1


def test_word_len_too_small():
    with pytest.raises(ValueError, match="word_len"):
        tokenize("open", word_len=1)
