"""SegAffordanceModel: output contract, parameter count, gradients, freezing, determinism, text caching."""
import dataclasses
import math

import pytest
import torch

from segaff_core.config import LossParams, ModelParams
from segaff_core.losses import compute_losses, kl_normals
from segaff_core.model import SegAffordanceModel, TextFeatures, build_model
from segaff_core.model.layers import DepthEncoder, soft_argmax
from segaff_core.text import tokenize, trim_padding

TEXTS = ["open the top drawer", "pull the fridge door", "rotate the oven knob", "lift the toilet lid"]
SEED_PARAMETER_COUNT = 150.3e6


def _inputs(batch: int, height: int, width: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 3, height, width, generator=generator)
    depth = torch.rand(batch, 1, height, width, generator=generator) * 3.0
    depth[:, :, : height // 8] = 0.0  # an invalid band
    return image, depth, tokenize(TEXTS[:batch])


def _targets(batch: int, height: int, width: int) -> dict[str, torch.Tensor]:
    mask = torch.zeros(batch, 1, height, width)
    mask[:, :, height // 4 : height // 2, width // 4 : width // 2] = 1.0
    axis = torch.nn.functional.normalize(torch.randn(batch, 3), dim=-1)
    return {"mask": mask, "axis": axis, "motion_type": torch.arange(batch) % 2}


def _small_model(**overrides) -> SegAffordanceModel:
    torch.manual_seed(0)
    return build_model(dataclasses.replace(ModelParams.small(), **overrides))


@pytest.fixture(scope="module")
def small_model() -> SegAffordanceModel:
    return _small_model().eval()


@pytest.mark.parametrize(
    "batch,height,width", [(1, 256, 256), (4, 256, 256), (1, 256, 192), (4, 256, 192), (1, 416, 416)]
)
def test_output_contract(small_model, batch, height, width):
    image, depth, text = _inputs(batch, height, width)
    with torch.inference_mode():
        out = small_model(image, depth, text)
    expected = {
        "mask_logits": (batch, 1, height // 4, width // 4),
        "point_logits": (batch, 1, height // 4, width // 4),
        "point_xy": (batch, 2),
        "axis": (batch, 3),
        "motion_type_logits": (batch, 2),
        "origin_offset": (batch, 3),
        "trajectory": (batch, 20, 3),
    }
    assert {k: tuple(v.shape) for k, v in out.items()} == expected  # no vae_* without targets
    for value in out.values():
        assert value.dtype == torch.float32 and torch.isfinite(value).all()
    torch.testing.assert_close(out["axis"].norm(dim=-1), torch.ones(batch))
    assert ((out["point_xy"] >= 0) & (out["point_xy"] <= 1)).all()
    assert torch.equal(out["trajectory"][:, 0], torch.zeros(batch, 3))


def test_cvae_outputs_with_targets():
    model = _small_model().train()
    image, depth, text = _inputs(2, 256, 192)
    out = model(image, depth, text, targets=_targets(2, 256, 192))
    latent = ModelParams.small().vae_latent_dim
    assert out["vae_mu"].shape == (2, latent) and out["vae_logvar"].shape == (2, latent)


def test_conditional_cvae_trains_the_prediction_inference_makes():
    """With the conditional prior, the motion outputs in training are those inference gives (the prior
    mean's), whatever the ground truth; the posterior's axis follows the ground truth."""
    head = _small_model().motion_head.eval()
    generator = torch.Generator().manual_seed(1)
    condition = torch.randn(2, head.condition[0].in_features, generator=generator)
    with torch.no_grad():
        inferred = head(condition)
        first = head(condition, torch.tensor([[1.0, 0.0, 0.0]] * 2), torch.tensor([0, 0]))
        second = head(condition, torch.tensor([[0.0, 0.0, 1.0]] * 2), torch.tensor([1, 1]))
    for key in ("axis", "motion_type_logits", "origin_offset"):
        torch.testing.assert_close(first[key], inferred[key])
        torch.testing.assert_close(second[key], inferred[key])
    assert not torch.allclose(first["vae_axis"], second["vae_axis"])
    assert {"vae_mu", "vae_logvar", "vae_prior_mu", "vae_prior_logvar"} <= set(first)


def test_only_the_prediction_s_loss_reaches_the_condition_of_the_conditional_cvae():
    head = _small_model().motion_head.train()
    condition = torch.randn(2, head.condition[0].in_features, requires_grad=True)
    axis = torch.nn.functional.normalize(torch.randn(2, 3), dim=-1)
    out = head(condition, axis, torch.tensor([0, 1]))
    posterior_and_kl = (out["vae_axis"] - axis).square().sum() + kl_normals(
        out["vae_mu"], out["vae_logvar"], out["vae_prior_mu"], out["vae_prior_logvar"])
    posterior_and_kl.backward()
    assert condition.grad is None or not condition.grad.any()
    assert head.encoder[0].weight.grad.abs().sum() > 0 and head.prior.weight.grad.abs().sum() > 0
    out["axis"].square().sum().backward()
    assert condition.grad.abs().sum() > 0


def test_standard_prior_cvae_is_the_seeds():
    """The seed's CVAE: motion from the posterior in training, z = 0 without ground truth, no prior net."""
    head = _small_model(cvae_prior="standard").motion_head.eval()
    assert head.prior is None
    condition = torch.randn(2, head.condition[0].in_features)
    axis, motion_type = torch.tensor([[1.0, 0.0, 0.0]] * 2), torch.tensor([0, 1])
    with torch.no_grad():
        posterior = head(condition, axis, motion_type)
        hidden = head.condition(condition)
        mu = head.encoder(torch.cat([hidden, axis, torch.nn.functional.one_hot(motion_type, 2).float()], -1))[:, :16]
        expected = head._decode(hidden, mu)
        at_zero = head._decode(hidden, torch.zeros(2, 16))
        inferred = head(condition)
    torch.testing.assert_close(posterior["axis"], expected["axis"])
    torch.testing.assert_close(inferred["axis"], at_zero["axis"])
    assert "vae_axis" not in posterior and "vae_prior_mu" not in posterior


def test_cvae_samples_spread_about_the_conditional_prior():
    head = _small_model().motion_head.eval()
    with torch.no_grad():
        head.prior.weight.zero_()
        head.prior.bias.copy_(torch.cat([torch.full((16,), 3.0), torch.full((16,), math.log(0.01))]))
        condition = torch.randn(1, head.condition[0].in_features)
        hidden = head.condition(condition)
        samples = head.sample(condition, 8, torch.Generator().manual_seed(0))
        at_mean = head._decode(hidden, torch.full((1, 16), 3.0))
        at_zero = head._decode(hidden, torch.zeros(1, 16))
    spread = (samples["axis"] - at_mean["axis"]).norm(dim=-1).max().item()
    from_zero = (at_zero["axis"] - at_mean["axis"]).norm(dim=-1).item()
    assert 0.0 < spread < 0.2 * from_zero  # draws of N(3, 0.1^2): about the prior mean, not about z = 0


def test_unknown_cvae_prior_is_refused():
    with pytest.raises(ValueError, match="cvae_prior"):
        ModelParams(cvae_prior="gaussian")


def test_default_parameter_count():
    model = build_model(ModelParams(clip_pretrain=None))
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - SEED_PARAMETER_COUNT) / SEED_PARAMETER_COUNT < 0.02, count


def test_small_config_is_small(small_model):
    assert sum(p.numel() for p in small_model.parameters()) < 8e6


def _loss_batch(batch: int, height: int, width: int) -> dict[str, torch.Tensor]:
    """A collated batch as the data sets give it (the data sample contract), for compute_losses."""
    point_3d = torch.tensor([[0.1, 0.2, 1.5], [0.0, -0.1, 2.0]])[:batch]
    return {
        **_targets(batch, height, width),
        "point": torch.tensor([[0.3, 0.4], [0.6, 0.5]])[:batch],
        "point_3d": point_3d,
        "origin": point_3d + torch.tensor([0.2, 0.0, 0.1]),
        "trajectory": torch.linspace(0.0, 0.2, 20)[None, :, None].expand(batch, 20, 3).clone(),
        "has_trajectory": torch.ones(batch, dtype=torch.bool),
    }


def test_gradients_of_the_training_loss_reach_every_parameter():
    """Two AdamW steps on compute_losses: every parameter gets a non-zero finite gradient. (open_clip
    zero-initialises each bottleneck's last BatchNorm, so its residual branch learns from the second step.)"""
    model = _small_model().train()
    image, depth, text = _inputs(2, 256, 192)
    batch = _loss_batch(2, 256, 192)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step in range(2):
        optimizer.zero_grad()
        out = model(image, depth, text, targets=batch)
        assert "vae_mu" in out
        total, _ = compute_losses(out, batch, LossParams())
        total.backward()
        if step == 0:
            assert model.motion_head.encoder[0].weight.grad.abs().sum() > 0  # the CVAE posterior was used
            optimizer.step()
    stalled = [name for name, p in model.named_parameters()
               if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not stalled, stalled


@pytest.mark.parametrize("batch,height,width", [(1, 256, 192), (4, 256, 256)])
def test_default_config_output_shapes(batch, height, width):
    torch.manual_seed(0)
    model = build_model(ModelParams(clip_pretrain=None)).eval()
    image, depth, text = _inputs(batch, height, width)
    with torch.inference_mode():
        out = model(image, depth, text)
    assert tuple(out["mask_logits"].shape) == (batch, 1, height // 4, width // 4)
    assert tuple(out["point_logits"].shape) == (batch, 1, height // 4, width // 4)
    assert tuple(out["axis"].shape) == (batch, 3) and tuple(out["trajectory"].shape) == (batch, 20, 3)
    assert all(torch.isfinite(value).all() for value in out.values())


def test_frozen_parts_get_no_gradient():
    model = _small_model()
    frozen = ("backbone", "depth_encoder", "neck")
    model.freeze(frozen)
    model.train()
    assert all(not getattr(model, name).training for name in frozen)  # BatchNorm statistics stay fixed
    assert model.decoder.training
    image, depth, text = _inputs(2, 256, 256)
    out = model(image, depth, text, targets=_targets(2, 256, 256))
    sum(value.sum() for value in out.values()).backward()
    for name, param in model.named_parameters():
        if name.split(".")[0] in frozen:
            assert not param.requires_grad and param.grad is None, name
        else:
            assert param.requires_grad and param.grad is not None, name
    with pytest.raises(ValueError, match="unknown model part"):
        model.freeze(["head"])


def test_eval_is_deterministic_and_text_can_be_cached(small_model):
    image, depth, text = _inputs(2, 256, 192)
    with torch.inference_mode():
        first = small_model(image, depth, text)
        second = small_model(image, depth, text)
        features = small_model.encode_text(text)
        cached = small_model.forward_with_text(image, depth, features)
    assert isinstance(features, TextFeatures)
    assert features.words.shape == (2, 77, small_model.backbone.text_width)
    assert features.state.shape == (2, ModelParams.small().word_dim)
    assert torch.equal(features.padding_mask, text == 0)
    for key in first:
        assert torch.equal(first[key], second[key]), key
        assert torch.equal(first[key], cached[key]), key


def test_samples_do_not_mix_across_the_batch(small_model):
    image, depth, text = _inputs(3, 256, 192)
    with torch.inference_mode():
        batched = small_model(image, depth, text)
        single = small_model(image[1:2], depth[1:2], text[1:2])
    for key, value in single.items():
        torch.testing.assert_close(batched[key][1:2], value, atol=1e-4, rtol=1e-4)


def test_cvae_posterior_changes_its_own_axis_only(small_model):
    image, depth, text = _inputs(2, 256, 256)
    targets = _targets(2, 256, 256)
    with torch.inference_mode():
        prior = small_model(image, depth, text)
        motion_targets = {"axis": targets["axis"], "motion_type": targets["motion_type"]}
        posterior = small_model(image, depth, text, targets=motion_targets)
    assert not torch.equal(prior["axis"], posterior["vae_axis"])
    for key in ("mask_logits", "axis", "trajectory"):
        torch.testing.assert_close(prior[key], posterior[key])


def test_sample_motion(small_model):
    image, depth, text = _inputs(2, 256, 192)
    with torch.inference_mode():
        summary = small_model.sample_motion(
            image, depth, text, num_samples=8, generator=torch.Generator().manual_seed(1)
        )
        again = small_model.sample_motion(
            image, depth, small_model.encode_text(text), num_samples=8, generator=torch.Generator().manual_seed(1)
        )
    assert summary["axis"].shape == (2, 3) and summary["axis_spread_deg"].shape == (2,)
    assert (summary["axis_spread_deg"] > 0).all()
    torch.testing.assert_close(summary["motion_type_prob"].sum(dim=-1), torch.ones(2))
    assert summary["origin_offset_std"].shape == (2, 3)
    assert summary["trajectory"].shape == (2, 20, 3) and torch.equal(summary["trajectory"][:, 0], torch.zeros(2, 3))
    for key in summary:
        assert torch.equal(summary[key], again[key]), key


def test_mlp_head_without_depth():
    model = _small_model(use_depth=False, use_cvae=False).eval()
    assert model.depth_encoder is None
    image, depth, text = _inputs(2, 256, 256)
    with torch.inference_mode():
        out = model(image, depth, text)
    assert out["axis"].shape == (2, 3) and "vae_mu" not in out
    with pytest.raises(RuntimeError, match="use_cvae"):
        model.sample_motion(image, depth, text)
    model.freeze(["backbone", "depth_encoder", "neck"])  # an absent depth encoder is skipped


def test_mask_skip_feeds_h8_features_and_is_off_in_the_seed_layout():
    """ModelParams.mask_skip_dim: the small config concatenates a projection of the neck's H/8 input after the
    projector's first upsampling; 0 builds the seed's projector (first conv on 2 * in_dim = vis_dim channels)."""
    vis_dim = ModelParams.small().vis_dim
    seed_layout = _small_model(mask_skip_dim=0, mask_skip4_dim=0).eval()
    assert seed_layout.projector.skip is None and seed_layout.projector.vis[1][0].in_channels == vis_dim
    assert not any(name.startswith("projector.skip") for name in seed_layout.state_dict())

    model = _small_model().eval()
    assert model.projector.vis[1][0].in_channels == vis_dim + ModelParams.small().mask_skip_dim
    image, depth, text = _inputs(1, 256, 192)
    with torch.inference_mode():
        out = model(image, depth, text)["mask_logits"]
        model.projector.skip[0].weight.zero_()  # cut the skip: the masks change
        cut = model(image, depth, text)["mask_logits"]
    assert not torch.allclose(out, cut)

    projector, kernels = model.projector, model.projector.text_kernels(torch.zeros(1, ModelParams.small().word_dim))
    with pytest.raises(ValueError, match="with an H/8 skip"):
        projector(torch.zeros(1, vis_dim, 8, 6), kernels)
    with pytest.raises(ValueError, match="both be positive"):
        type(projector)(128, 32, skip_in=64, skip_dim=0)


def test_mask_skip4_feeds_h4_clip_features_to_the_last_stage():
    """ModelParams.mask_skip4_dim: CLIP's H/4 layer1 output, projected, joins the projector before its last
    3x3 convolution (H/4 detail for mask edges); the masks depend on it."""
    vis_dim, skip4_dim = ModelParams.small().vis_dim, 16
    model = _small_model(mask_skip4_dim=skip4_dim).eval()
    assert model.projector.vis[3][0].in_channels == vis_dim + skip4_dim
    assert model.projector.skip4[0].in_channels == model.backbone.h4_channels
    image, depth, text = _inputs(1, 256, 192)
    with torch.inference_mode():
        v1 = model.encode_image(image)[0]
        out = model(image, depth, text)["mask_logits"]
        model.projector.skip4[0].weight.zero_()  # cut the H/4 skip: the masks change
        cut = model(image, depth, text)["mask_logits"]
    assert v1.shape == (1, model.backbone.h4_channels, 64, 48)
    assert out.shape == (1, 1, 64, 48) and not torch.allclose(out, cut)
    without = _small_model(mask_skip4_dim=0)
    assert without.projector.skip4 is None and without.projector.vis[3][0].in_channels == vis_dim
    kernels = model.projector.text_kernels(torch.zeros(1, ModelParams.small().word_dim))
    skip = torch.zeros(1, model.projector.skip[0].in_channels, 16, 12)
    with pytest.raises(ValueError, match="with an H/4 skip"):
        model.projector(torch.zeros(1, vis_dim, 8, 6), kernels, skip)


def test_trimmed_token_padding_gives_the_same_outputs(small_model):
    """The collate function cuts the zero padding after a batch's longest instruction (trim_padding): the
    causal text encoder and the masked cross-attention give the same outputs as with all 77 tokens."""
    image, depth, text = _inputs(2, 256, 192)
    trimmed = trim_padding(text)
    assert trimmed.shape == (2, int((text != 0).sum(dim=1).max()))
    assert torch.equal(trimmed, text[:, : trimmed.shape[1]]) and (text[:, trimmed.shape[1]:] == 0).all()
    assert trim_padding(torch.zeros(2, 77, dtype=torch.long)).shape == (2, 1)
    with torch.inference_mode():
        full = small_model(image, depth, text)
        short = small_model(image, depth, trimmed)
    for key in full:
        torch.testing.assert_close(short[key], full[key], atol=1e-5, rtol=1e-5)


def test_inference_follows_weights_a_fused_optimizer_changes():
    """Fused AdamW updates weights in place without bumping their version counters: inference after its
    step must use the new weights (a memo keyed on versions once kept the attention pool's old positions)."""
    model = _small_model().eval()
    image, depth, text = _inputs(1, 160, 160)
    with torch.inference_mode():
        model(image, depth, text)  # anything memoised is memoised now
    position = model.backbone.visual.attnpool.positional_embedding
    optimizer = torch.optim.AdamW([position], lr=0.1, fused=True)
    position.grad = torch.randn_like(position)
    optimizer.step()
    fresh = _small_model().eval()
    fresh.load_state_dict(model.state_dict())
    with torch.inference_mode():
        after, expected = model(image, depth, text), fresh(image, depth, text)
    for key in expected:
        torch.testing.assert_close(after[key], expected[key], msg=key)


def test_input_validation(small_model):
    image, depth, text = _inputs(1, 250, 256)
    with pytest.raises(ValueError, match="multiples of 32"):
        small_model(image, depth, text)
    with pytest.raises(ValueError, match="fpn_in"):
        build_model(dataclasses.replace(ModelParams.small(), fpn_in=[512, 1024, 1024]))


def test_depth_encoder_handles_invalid_pixels():
    encoder = DepthEncoder((16, 32)).eval()
    depth = torch.rand(1, 1, 64, 96) * 4.0
    depth[0, 0, :8] = float("nan")
    depth[0, 0, 8:16] = float("inf")
    depth[0, 0, 16:24] = 0.0
    with torch.inference_mode():
        feat_8, feat_16 = encoder(depth)
    assert feat_8.shape == (1, 16, 8, 12) and feat_16.shape == (1, 32, 4, 6)
    assert torch.isfinite(feat_8).all() and torch.isfinite(feat_16).all()


def test_soft_argmax_finds_a_peak():
    logits = torch.full((1, 1, 16, 32), -50.0)
    logits[0, 0, 3, 10] = 50.0
    torch.testing.assert_close(soft_argmax(logits), torch.tensor([[10.5 / 32, 3.5 / 16]]))
