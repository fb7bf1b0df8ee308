"""Loading CLIP weights: OpenAI's TorchScript archive layout, plain state dicts, and clear errors."""
import dataclasses
import warnings
from pathlib import Path
from typing import Optional

import pytest
import torch
from open_clip.model import CLIP

from segaff_core.config import ModelParams
from segaff_core.model import build_model
from segaff_core.model.backbone import clip_model_config


def _openai_layout_clip(seed: int = 0, clip_config: Optional[dict] = ModelParams.small().clip_config) -> CLIP:
    """A random CLIP ResNet (by default the small test config; ``None``: the real RN50 sizes) whose state
    dict looks like OpenAI's RN50.pt: OpenAI key names plus the ``input_resolution``/``context_length``/
    ``vocab_size`` entries."""
    torch.manual_seed(seed)
    config = clip_model_config("RN50", clip_config)
    clip = CLIP(config["embed_dim"], config["vision_cfg"], config["text_cfg"], quick_gelu=True).eval()
    with torch.no_grad():
        clip.visual.layer1[0].bn3.weight.normal_()  # open_clip zero-initialises these; make the check meaningful
    causal_mask = clip.attn_mask
    del clip.attn_mask  # OpenAI keeps the causal mask as a plain attribute, not a state-dict entry
    clip.attn_mask = causal_mask
    for name, value in (("input_resolution", 224), ("context_length", 77), ("vocab_size", 49408)):
        if hasattr(clip, name):
            delattr(clip, name)  # open_clip keeps some as plain ints
        clip.register_buffer(name, torch.tensor(value))
    return clip


@pytest.fixture(scope="module")
def reference_clip() -> CLIP:
    return _openai_layout_clip()


def _params(path: Path) -> ModelParams:
    return dataclasses.replace(ModelParams.small(), clip_pretrain=str(path))


def _assert_backbone_equals(model, clip: CLIP) -> None:
    backbone = model.backbone
    assert torch.equal(backbone.visual.layer1[0].conv1.weight, clip.visual.layer1[0].conv1.weight.float())
    assert torch.equal(backbone.visual.layer1[0].bn3.weight, clip.visual.layer1[0].bn3.weight.float())
    assert torch.equal(backbone.token_embedding.weight, clip.token_embedding.weight.float())
    assert torch.equal(backbone.text_projection, clip.text_projection.float())
    assert torch.equal(backbone.visual.attnpool.positional_embedding, clip.visual.attnpool.positional_embedding.float())
    assert all(p.dtype == torch.float32 for p in model.parameters())


def _save_torchscript(clip: CLIP, path: Path) -> set[str]:
    """``clip`` traced and saved as a TorchScript archive (OpenAI's format); returns the archived keys."""
    tokens = torch.zeros(1, 77, dtype=torch.long)
    tokens[0, :2] = torch.tensor([49406, 49407])
    with warnings.catch_warnings():  # torch.jit tracing/saving are deprecated, yet that is OpenAI's format
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace_module(clip, {"encode_text": tokens}), str(path))
        return set(torch.jit.load(str(path)).state_dict())


def test_torchscript_archive(tmp_path, reference_clip):
    path = tmp_path / "RN50.pt"
    archived_keys = _save_torchscript(reference_clip, path)
    assert {"input_resolution", "context_length", "vocab_size", "logit_scale"} <= archived_keys
    assert "attn_mask" not in archived_keys
    _assert_backbone_equals(build_model(_params(path)), reference_clip)


@pytest.mark.slow
def test_full_size_rn50_torchscript_archive_in_half_precision(tmp_path):
    """The real RN50 sizes, fp16 weights as in OpenAI's RN50.pt, into the default model configuration."""
    clip = _openai_layout_clip(seed=1, clip_config=None).half()
    path = tmp_path / "RN50.pt"
    _save_torchscript(clip, path)
    assert path.stat().st_size > 190e6  # 102 M fp16 parameters
    model = build_model(ModelParams(clip_pretrain=str(path)))
    assert model.backbone.visual.attnpool.positional_embedding.shape == (50, 2048)
    _assert_backbone_equals(model, clip)


def test_plain_state_dict_in_half_precision(tmp_path, reference_clip):
    path = tmp_path / "clip_state.pt"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in reference_clip.state_dict().items()}, path)
    model = build_model(_params(path))
    assert torch.equal(model.backbone.ln_final.weight, reference_clip.ln_final.weight.half().float())
    assert torch.equal(
        model.backbone.visual.layer1[0].conv1.weight, reference_clip.visual.layer1[0].conv1.weight.half().float()
    )


def test_wrapped_state_dict(tmp_path, reference_clip):
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference_clip.state_dict().items()}}, path)
    _assert_backbone_equals(build_model(_params(path)), reference_clip)


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "pretrain" / "RN50.pt"
    with pytest.raises(FileNotFoundError, match="RN50.pt") as info:
        build_model(_params(path))
    assert str(path) in str(info.value)


def test_wrong_architecture_names_the_keys(tmp_path, reference_clip):
    state = dict(reference_clip.state_dict())
    del state["ln_final.bias"]
    state["visual.layer5.0.conv1.weight"] = torch.zeros(1)
    state["token_embedding.weight"] = torch.zeros(49408, 32)
    path = tmp_path / "other.pt"
    torch.save(state, path)
    with pytest.raises(ValueError) as info:
        build_model(_params(path))
    message = str(info.value)
    assert str(path) in message
    assert "missing keys [ln_final.bias]" in message
    assert "unexpected keys [visual.layer5.0.conv1.weight]" in message
    assert "mismatched shapes" in message and "token_embedding.weight (49408, 32) vs (49408, 64)" in message


def test_default_rn50_rejects_a_small_checkpoint(tmp_path, reference_clip):
    path = tmp_path / "small.pt"
    torch.save(reference_clip.state_dict(), path)
    params = dataclasses.replace(ModelParams.small(), clip_config=None, clip_pretrain=str(path),
                                 fpn_in=[512, 1024, 1024], word_dim=1024)
    with pytest.raises(ValueError, match="does not fit the CLIP backbone 'RN50'.*mismatched shapes"):
        build_model(params)


def test_unreadable_file(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a checkpoint" * 8)
    with pytest.raises(ValueError, match="neither a TorchScript archive nor a state dict"):
        build_model(_params(path))
