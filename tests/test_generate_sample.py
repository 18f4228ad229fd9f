"""generate.sample: the zoo's trained text-to-image models for behaviour; tiny random diffusers pipelines built here
(SD1, SDXL, SD3, FLUX.1, FLUX.2 configs) for shapes, spaces, token packing and seeds."""

from __future__ import annotations

import pytest
import torch

from latentbridge.errors import IncompatibleError, LatentBridgeError, ShapeError
from latentbridge.generate import (
    PromptEmbedding,
    empty_latent,
    from_pipeline,
    load_model,
    model_vae,
    noise,
    sample,
    set_scheduler,
)
from latentbridge.photos import photo_tensor
from latentbridge.weights.load import load_vae
from latentbridge.zoo.t2i import CAPTIONS, T2I_PHOTOS, nearest_photo, t2i_path

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    return torch.cat([photo_tensor(name, 256) for name in T2I_PHOTOS])


@pytest.fixture(scope="module", params=["t2i-a", "t2i-c"])
def zoo_model(request):
    if not (t2i_path(request.param) / "model_index.json").is_file():
        pytest.fail(f"the zoo model {request.param} is missing: run scripts/train_t2i.py")
    return load_model(request.param)


def decoded(model, latent) -> torch.Tensor:
    vae = model.pipeline.vae
    with torch.no_grad():
        return vae.decode(latent.tensor / vae.config.scaling_factor).sample.clamp(-1, 1)


@pytest.mark.slow
def test_zoo_model_samples_land_nearest_their_captioned_photo(zoo_model, photos):
    # Seeds 100 and 101 (the training script measured with 0-7), the first caption of each of the 8 photos: 16 samples.
    # By chance 1 in 8 lands on its photo; 6 or more of 16 happens by chance with probability 0.6 % (binomial).
    hits = 0
    for index, name in enumerate(T2I_PHOTOS):
        lat = noise(empty_latent(zoo_model.format, 256, 256, batch=2), [100, 101])
        out = sample(zoo_model, CAPTIONS[name][0], lat, steps=20, guidance=4.0)
        hits += int((nearest_photo(decoded(zoo_model, out), photos) == index).sum())
    assert hits >= 6, f"{zoo_model.name}: {hits} of 16 samples nearest their captioned photo (chance: 2)"


def test_zoo_model_loop_matches_the_diffusers_pipeline_and_records_provenance(zoo_model):
    lat = noise(empty_latent(zoo_model.format, 256, 256), 3)
    steps: list = []
    ours = sample(zoo_model, "a red motorcycle", lat, steps=6, guidance=4.0, callback=steps.append)
    ref = zoo_model.pipeline(
        "a red motorcycle", num_inference_steps=6, guidance_scale=4.0, latents=lat.tensor, output_type="latent"
    ).images
    # Same operations in the same order as StableDiffusionPipeline.__call__ (A1111 encoding of an unweighted short
    # prompt is the plain CLIP encoding times mean/mean): float32 rounding of that ratio only.
    torch.testing.assert_close(ours.tensor, ref, rtol=1e-4, atol=1e-4)
    assert [s.index for s in steps] == list(range(6)) and steps[-1].total == 6
    extra = dict(ours.provenance.extra)
    assert extra["model"] == zoo_model.name and extra["steps"] == "6" and extra["stage"] == "sample"
    assert ours.provenance.vae_name == zoo_model.format.name and len(ours.provenance.vae_sha256) == 64
    assert ours.provenance.seed == 3 and ours.provenance.prompt == "a red motorcycle"
    assert ours.format is zoo_model.format and ours.space == "model"
    vae = model_vae(zoo_model)  # the model's own VAE: the zoo file whose hash the provenance records
    assert vae.sha256 == ours.provenance.vae_sha256 and vae.format is zoo_model.format


def test_split_schedule_equals_the_whole_run(zoo_model):
    lat = noise(empty_latent(zoo_model.format, 128, 128), 11)
    whole = sample(zoo_model, "a cup of coffee", lat, steps=8)
    first = sample(zoo_model, "a cup of coffee", lat, steps=8, denoise_end=0.5)
    second = sample(zoo_model, "a cup of coffee", first, steps=8, denoise_start=0.5)
    # DDIM is stateless between steps, so stopping and resuming runs exactly the same arithmetic.
    assert torch.equal(whole.tensor, second.tensor)
    assert "steps 4-8 of 8" in second.provenance.history[-1]


@pytest.mark.slow
def test_img2img_low_strength_keeps_the_init_photo(zoo_model, photos):
    vae = zoo_model.pipeline.vae
    with torch.no_grad():
        clean = vae.encode(photos[3:4]).latent_dist.mean * vae.config.scaling_factor  # the rocket photo
    init = empty_latent(zoo_model.format, 256, 256).replace(tensor=clean)
    out = sample(zoo_model, "a tabby cat", noise(init, 5), init=init, strength=0.3, steps=10)
    assert int(nearest_photo(decoded(zoo_model, out), photos)) == 3  # 30 % noise: the rocket survives the cat prompt


def test_sample_refusals(zoo_model):
    other = "zoo-a" if zoo_model.format.name == "zoo-c" else "zoo-c"
    with pytest.raises(IncompatibleError, match=rf"is a {other} latent but {zoo_model.name} samples in"):
        sample(zoo_model, "a cat", noise(empty_latent(other, 64, 64), 1))
    lat = noise(empty_latent(zoo_model.format, 64, 64), 1)
    with pytest.raises(IncompatibleError, match="raw VAE output"):
        sample(zoo_model, "a cat", lat.replace(space="raw"))
    with pytest.raises(LatentBridgeError, match=r"denoise_start \(0.5\) must be below denoise_end \(0.5\)"):
        sample(zoo_model, "a cat", lat, denoise_start=0.5, denoise_end=0.5)
    with pytest.raises(LatentBridgeError, match="strength is for img2img: pass init"):
        sample(zoo_model, "a cat", lat, strength=0.5)
    with pytest.raises(ShapeError, match=r"samples \[N, \d+, h, w\] model-space latents"):
        sample(zoo_model, "a cat", noise((1, 3, 8, 8), 1))


# --- tiny random pipelines built in code --------------------------------------------------------------------------


def tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(t2i_path("t2i-a") / "tokenizer")


def clip(width: int, projection: bool = False, layers: int = 2):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tok = tokenizer()
    config = CLIPTextConfig(
        vocab_size=len(tok),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=layers,
        num_attention_heads=2,
        projection_dim=width,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    model = (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()
    with torch.no_grad():  # a trained CLIP's final layer norm has a bias; A1111's mean rescale divides by the mean
        norm = next(m for n, m in model.named_modules() if n.endswith("final_layer_norm"))
        norm.bias.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(1))
    return model


def unet(channels: int, cross: int, **extra):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=cross,
        attention_head_dim=2,
        norm_num_groups=4,
        **extra,
    ).eval()


def test_tiny_sd1_pipeline_shapes_seeds_and_schedulers(tmp_path):
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=load_vae("zoo-a").module,
        text_encoder=clip(16),
        tokenizer=tokenizer(),
        unet=unet(4, 16),
        scheduler=EulerDiscreteScheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    model = from_pipeline(pipe, name="tiny-sd1")
    assert model.format.name == "sd1"
    lat = noise(empty_latent("sd1", 96, 64, batch=2), [1, 2])
    out = sample(model, "a (cat:1.2), " * 20, lat, steps=3, guidance=3.0)  # 2 chunks: 154 tokens of cross-attention
    assert out.shape == (2, 4, 8, 12) and out.format.name == "sd1" and out.space == "model"
    again = sample(
        model, "a (cat:1.2), " * 20, noise(empty_latent("sd1", 96, 64, batch=2), [1, 2]), steps=3, guidance=3.0
    )
    assert torch.equal(out.tensor, again.tensor)
    # Item 1 of the batch is the same as a batch of one seeded 2 (per-item seeds).
    single = sample(model, "a (cat:1.2), " * 20, noise(empty_latent("sd1", 96, 64), [2]), steps=3, guidance=3.0)
    torch.testing.assert_close(single.tensor[0], out.tensor[1], rtol=1e-5, atol=1e-5)  # batched matmul rounding
    # Another scheduler, by class name or from a local scheduler folder; the pipeline's own is left alone.
    ddim = set_scheduler(model, "DDIMScheduler")
    pipe.scheduler.save_pretrained(tmp_path / "scheduler")
    euler = set_scheduler(ddim, tmp_path / "scheduler")
    by_ddim = sample(ddim, "a cat", lat, steps=3)
    assert dict(by_ddim.provenance.extra)["scheduler"] == "DDIMScheduler"
    assert (
        type(model.pipeline.scheduler).__name__ == type(euler.pipeline.scheduler).__name__ == "EulerDiscreteScheduler"
    )
    assert not torch.allclose(by_ddim.tensor, sample(euler, "a cat", lat, steps=3).tensor)
    with pytest.raises(LatentBridgeError, match="unknown diffusers scheduler 'Fancy'"):
        set_scheduler(model, "Fancy")
    # Euler keeps a step index: a split run must still equal the whole one (set_begin_index).
    half = sample(model, "a cat", lat, steps=4, denoise_end=0.5)
    rest = sample(model, "a cat", half, steps=4, denoise_start=0.5)
    torch.testing.assert_close(rest.tensor, sample(model, "a cat", lat, steps=4).tensor, rtol=1e-5, atol=1e-5)


def test_a1111_emphasis_refuses_an_encoder_whose_mean_is_zero():
    from latentbridge.generate import TextEncoder, encode_prompt

    encoder = clip(16)
    with torch.no_grad():  # diffusers-style random init: the final layer norm's bias is 0, so every token's mean is 0
        next(m for n, m in encoder.named_modules() if n.endswith("final_layer_norm")).bias.zero_()
    enc = TextEncoder(name="random", tokenizer=tokenizer(), model=encoder)
    with pytest.raises(LatentBridgeError, match=r"rescales each chunk by its mean.*use emphasis='comfyui'"):
        encode_prompt("a (cat:1.2)", enc)
    assert torch.isfinite(encode_prompt("a (cat:1.2)", enc, emphasis="comfyui").hidden).all()


def test_tiny_sdxl_pipeline_uses_both_encoders_and_time_ids():
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline(
        vae=load_vae("zoo-a").module,
        text_encoder=clip(16),
        text_encoder_2=clip(16, projection=True),
        tokenizer=tokenizer(),
        tokenizer_2=tokenizer(),
        unet=unet(
            4,
            32,  # both encoders' hidden states side by side
            addition_embed_type="text_time",
            addition_time_embed_dim=4,
            projection_class_embeddings_input_dim=6 * 4 + 16,  # 6 time ids + the pooled projection
        ),
        scheduler=EulerDiscreteScheduler(),
    )
    model = from_pipeline(pipe, name="tiny-sdxl")
    lat = noise(empty_latent("sdxl", 64, 128), 9)
    out = sample(model, "a cat", lat, steps=2, guidance=5.0, denoise_end=0.5)
    assert out.shape == (1, 4, 16, 8) and out.format.name == "sdxl"
    assert "steps 0-1 of 2" in out.provenance.history[-1]


def _embedding(tokens: int, width: int, pooled: int) -> PromptEmbedding:
    g = torch.Generator().manual_seed(0)
    return PromptEmbedding(
        hidden=torch.randn(1, tokens, width, generator=g),
        negative=torch.randn(1, tokens, width, generator=g),
        pooled=torch.randn(1, pooled, generator=g),
        negative_pooled=torch.randn(1, pooled, generator=g),
        prompt="a cat",
        negative_prompt="",
        chunks=(),
        encoder="random",
        emphasis="none",
    )


def test_tiny_sd3_pipeline_spatial_latents():
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=8,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        caption_projection_dim=16,
        pooled_projection_dim=16,
    ).eval()
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=None,
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        text_encoder_3=None,
        tokenizer_3=None,
    )
    model = from_pipeline(pipe, name="tiny-sd3")
    steps: list = []
    out = sample(
        model, _embedding(7, 16, 16), noise(empty_latent("sd3", 64, 96, batch=2), 4), steps=2, callback=steps.append
    )
    assert out.shape == (2, 16, 12, 8) and out.format.name == "sd3" and len(steps) == 2
    with pytest.raises(LatentBridgeError, match="transformer pipelines only from pure noise to the end"):
        sample(model, _embedding(7, 16, 16), noise(empty_latent("sd3", 64, 64), 4), steps=2, denoise_end=0.5)


def test_tiny_flux1_pipeline_packs_tokens_and_unpacks_its_output():
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,  # 16 channels in 2x2 tokens
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=16,
        pooled_projection_dim=16,
        axes_dims_rope=[4, 4, 8],
    ).eval()
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=None,
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=transformer,
    )
    model = from_pipeline(pipe, name="tiny-flux1")
    lat = noise(empty_latent("flux1", 64, 32), 8)
    out = sample(model, _embedding(5, 16, 16), lat, steps=2)
    assert out.shape == (1, 16, 4, 8) and out.format.name == "flux1"
    # The pipeline, given the same tokens packed by its own code, returns the same latent once unpacked.
    packed = FluxPipeline._pack_latents(lat.tensor, 1, 16, 4, 8)
    ref = pipe(
        prompt_embeds=_embedding(5, 16, 16).hidden,
        pooled_prompt_embeds=_embedding(5, 16, 16).pooled,
        latents=packed,
        num_inference_steps=2,
        height=32,
        width=64,
        output_type="latent",
    ).images
    assert torch.equal(FluxPipeline._pack_latents(out.tensor, 1, 16, 4, 8), ref)


def test_tiny_flux2_pipeline_samples_packed_128_channel_latents():
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2Pipeline, Flux2Transformer2DModel

    torch.manual_seed(0)
    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=128,  # FLUX.2's model space: 32 raw channels 2x2-packed
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=16,
        timestep_guidance_channels=256,
        axes_dims_rope=[4, 4, 4, 4],
    ).eval()
    pipe = Flux2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=None,
        text_encoder=None,
        tokenizer=None,
        transformer=transformer,
    )
    model = from_pipeline(pipe, name="tiny-flux2")
    lat = noise(empty_latent("flux2", 64, 32), 8)
    assert lat.shape == (1, 128, 2, 4)
    out = sample(model, _embedding(5, 16, 16), lat, steps=2)
    assert out.shape == (1, 128, 2, 4) and out.format.name == "flux2" and out.space == "model"
    assert not torch.equal(out.tensor, lat.tensor)


def test_load_model_refuses_what_it_cannot_load(tmp_path):
    from latentbridge.errors import WeightsError

    with pytest.raises(WeightsError, match=r"a folder without model_index\.json"):
        load_model(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(WeightsError, match="pass config=FOLDER"):
        load_model(tmp_path / "model.safetensors")
    with pytest.raises(WeightsError, match="no model at"):
        load_model(tmp_path / "missing")


def test_readme_generation_example_runs():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Generation stages", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["images"].shape == (2, 3, 256, 256)
    assert scope["out"].provenance.seed == 7 and scope["emb"].prompt == "a (red:1.2) motorcycle"
