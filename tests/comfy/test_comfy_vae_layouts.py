"""The VAE key layouts ComfyUI 0.8.0 loads and writes, checked against ComfyUI itself: what its VAESave node writes
for each family is identified by `latentbridge inspect` (describe) and loads to the same network; ComfyUI's own
modules for HunyuanVideo, HunyuanImage 2.1 and HunyuanVideo 1.5 (tiny widths: ComfyUI's VAE wrapper hard-codes the
released widths, its modules do not) write the keys latentbridge's signatures declare; and ComfyUI decodes what
latentbridge decodes.
"""

from __future__ import annotations

import harness
import pytest
import torch
from safetensors.torch import load_file, save_file
from test_comfy_smoke import DECODE_MEAN_TOL, SD_WIDTHS, _kl_file, _write_latent

from latentbridge.formats import get_format, model_to_raw
from latentbridge.weights import describe, load_vae

# the same weights through two implementations in fp32: float32 rounding of different op orders
PARITY = 1e-4


def _vae_save(comfy: harness.Comfy, vae_name: str, prefix: str):
    """VAELoader(vae_name) -> VAESave; the path of the written file."""
    r = comfy.run(
        {
            "1": {"class_type": "VAELoader", "inputs": {"vae_name": vae_name}},
            "2": {"class_type": "VAESave", "inputs": {"vae": ["1", 0], "filename_prefix": f"vae/{prefix}"}},
        }
    )
    assert r.ok, r.error
    (path,) = sorted((comfy.output_dir / "vae").glob(f"{prefix}_*.safetensors"))
    return path


def _same_decode(a, b, z) -> float:
    with torch.no_grad():
        return (a.decode(z) - b.decode(z)).abs().max().item()


@pytest.mark.parametrize(
    ("channels", "quant", "signature", "formats"),
    [
        (4, True, "autoencoder_kl/ldm", ("sd1", "sdxl", "playground25")),
        (16, False, "autoencoder_kl/bfl", ("sd3", "flux1")),
    ],
)
def test_vaesave_of_a_kl_vae_is_identified_and_loads_the_same(comfy, channels, quant, signature, formats):
    src = _kl_file(comfy.models_dir("vae") / f"kl{channels}_save_src.safetensors", channels, quant, seed=channels)
    saved = _vae_save(comfy, src.name, f"kl{channels}")
    info = describe(saved, hash=False)
    assert info.matches == (signature,) and info.formats == formats
    torch.manual_seed(0)
    z = torch.randn(1, channels, 4, 4)
    assert _same_decode(load_vae(saved, hash=False), load_vae(src, hash=False), z) <= PARITY


@pytest.fixture(scope="module")
def flux2_vae(comfy: harness.Comfy):
    """A FLUX.2 VAE at the released widths with random weights, in diffusers' layout, and its diffusers module."""
    from diffusers import AutoencoderKLFlux2

    torch.manual_seed(5)
    model = AutoencoderKLFlux2(block_out_channels=SD_WIDTHS, layers_per_block=2, latent_channels=32).eval()
    model.bn.running_mean.normal_()
    model.bn.running_var.uniform_(0.5, 2.0)
    path = comfy.models_dir("vae") / "flux2_random.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path, model


def test_vaesave_of_flux2_is_identified_and_loads_the_same(comfy, flux2_vae):
    """A FLUX.2 VAE as ComfyUI's VAESave writes it was 'architecture unknown'; now autoencoder_kl_flux2/ldm."""
    src, model = flux2_vae
    saved = _vae_save(comfy, src.name, "flux2")
    keys = set(load_file(str(saved)))
    assert {"quant_conv.weight", "post_quant_conv.weight", "bn.running_mean", "bn.num_batches_tracked"} <= keys
    assert "encoder.down.0.block.0.conv1.weight" in keys
    info = describe(saved, hash=False)
    assert info.matches == ("autoencoder_kl_flux2/ldm",)
    assert (info.format, info.latent_channels, info.spatial_ratio) == ("flux2", 32, 8)
    vae = load_vae(saved, hash=False)
    torch.manual_seed(1)
    z = torch.randn(1, 32, 4, 4)
    assert _same_decode(vae, load_vae(src, hash=False), z) <= PARITY
    assert torch.equal(vae.stats.mean, model.bn.running_mean)


def test_comfyui_decodes_a_flux2_latent_in_model_space(comfy, flux2_vae):
    """ComfyUI's FLUX.2 LATENT is the packed, BatchNorm-normalised 128-channel tensor at 16×; its VAEDecode equals
    latentbridge's decode of model_to_raw of the same tensor."""
    src, _model = flux2_vae
    torch.manual_seed(2)
    z = torch.randn(1, 128, 3, 4)
    name = _write_latent(comfy, "flux2_model.latent", z)
    r = comfy.run(
        {
            "1": {"class_type": "LoadLatent", "inputs": {"latent": name}},
            "2": {"class_type": "VAELoader", "inputs": {"vae_name": src.name}},
            "3": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0], "vae": ["2", 0]}},
            "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
        }
    )
    assert r.ok, r.error
    assert r.values["2"][0].latent_channels == 128
    image = r.values["3"][0]
    assert image.shape == (1, 48, 64, 3)
    ours = load_vae(src, hash=False)
    with torch.no_grad():
        raw = model_to_raw(z, get_format("flux2"), ours.stats)
        want = ((ours.decode(raw) + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)
    assert (image - want).abs().mean() < DECODE_MEAN_TOL


def test_vaesave_of_taesd_is_the_comfyui_layout_latentbridge_reads(comfy):
    """ComfyUI combines taesd_encoder/taesd_decoder from models/vae_approx and stores the format's scale/shift."""
    from latentbridge.models.taesd import TAESD, TAESDConfig

    torch.manual_seed(4)
    model = TAESD(TAESDConfig(4, ""))
    for half in ("encoder", "decoder"):
        state = {k[len(half) + 1 :]: v for k, v in model.state_dict().items() if k.startswith(half + ".")}
        save_file(state, str(comfy.models_dir("vae_approx") / f"taesdxl_{half}.safetensors"))
    saved = _vae_save(comfy, "taesdxl", "taesdxl")
    info = describe(saved, hash=False)
    assert info.matches == ("taesd/comfyui",)
    vae = load_vae(saved, hash=False)
    assert vae.format is get_format("sdxl")  # read from vae_scale = 0.13025


def test_vaesave_of_wan21_is_the_original_layout(comfy):
    """ComfyUI reads a Wan 2.1 VAE's width from the file, so a tiny one loads; it decodes 5-D raw LATENTs."""
    from diffusers import AutoencoderKLWan
    from test_weights import to_wan_original

    torch.manual_seed(3)
    model = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2).eval()
    src = comfy.models_dir("vae") / "wan21_tiny.safetensors"
    save_file(to_wan_original(model.state_dict(), 2), str(src))
    saved = _vae_save(comfy, src.name, "wan21")
    assert describe(saved, hash=False).matches == ("autoencoder_kl_wan/wan",)
    torch.manual_seed(6)
    z = torch.randn(1, 16, 2, 4, 6)  # 2 latent frames = 5 video frames
    name = _write_latent(comfy, "wan21.latent", z)
    r = comfy.run(
        {
            "1": {"class_type": "LoadLatent", "inputs": {"latent": name}},
            "2": {"class_type": "VAELoader", "inputs": {"vae_name": src.name}},
            "3": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0], "vae": ["2", 0]}},
            "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
        }
    )
    assert r.ok, r.error
    frames = r.values["3"][0]  # VAEDecode folds the video's frames into the batch: [T, H, W, 3]
    assert frames.shape == (5, 32, 48, 3)
    with torch.no_grad():
        want = ((load_vae(saved, hash=False).decode(z) + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)
    assert (frames - want).abs().mean() < DECODE_MEAN_TOL


def _comfy_module(kind: str, channels: int):
    """ComfyUI's own autoencoder module for ``kind`` at tiny widths (the classes comfy/sd.py's VAE builds)."""
    from comfy.ldm.models.autoencoder import AutoencoderKL, AutoencodingEngine

    torch.manual_seed(9)
    if kind == "hunyuan_video":  # comfy/sd.py: the "decoder.conv_in.conv.weight" branch (conv3d, time_compress 4)
        ddconfig = {
            "double_z": True,
            "z_channels": channels,
            "resolution": 256,
            "in_channels": 3,
            "out_ch": 3,
            "ch": 32,
            "ch_mult": [1, 2, 2, 2],
            "num_res_blocks": 1,
            "attn_resolutions": [],
            "dropout": 0.0,
            "conv3d": True,
            "time_compress": 4,
        }
        module = AutoencoderKL(ddconfig=ddconfig, embed_dim=channels)
    else:
        video = kind == "hunyuan_video15"
        cfg = {
            "block_out_channels": [32, 32, 64, 64, 64] + ([] if video else [64]),
            "in_channels": 3,
            "out_channels": 3,
            "num_res_blocks": 1,
            "ffactor_spatial": 16 if video else 32,
            "downsample_match_channel": True,
            "upsample_match_channel": True,
            "z_channels": channels,
        }
        if video:
            cfg.update(ffactor_temporal=4)  # refiner_vae defaults to True: the HunyuanVideo 1.5 VAE
        net = "comfy.ldm.hunyuan_video." + ("vae_refiner" if video else "vae")
        reg = "EmptyRegularizer" if video else "DiagonalGaussianRegularizer"
        module = AutoencodingEngine(
            regularizer_config={"target": f"comfy.ldm.models.autoencoder.{reg}"},
            encoder_config={"target": f"{net}.Encoder", "params": cfg},
            decoder_config={"target": f"{net}.Decoder", "params": cfg},
        )
    for p in module.parameters():  # comfy.ops skips weight init: fill every tensor
        p.data.normal_(0, 0.05)
    return module.eval()


@pytest.mark.parametrize(
    ("kind", "channels", "signature", "ratio"),
    [
        ("hunyuan_video", 16, "autoencoder_kl_hunyuan_video/ldm", 8),
        ("hunyuan_image21", 64, "autoencoder_hunyuan_dcae/comfyui", 32),
        ("hunyuan_video15", 32, "autoencoder_hunyuan_dcae+video/comfyui", 16),
    ],
)
def test_comfyui_modules_write_the_declared_layouts(comfy, tmp_path, kind, channels, signature, ratio):
    module = _comfy_module(kind, channels)
    path = tmp_path / f"{kind}.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    info = describe(path, hash=False)
    assert info.matches == (signature,)
    assert (info.latent_channels, info.spatial_ratio, info.format) == (channels, ratio, kind)


def _hunyuan_video_pair(tmp_path, silence_attention: bool):
    module = _comfy_module("hunyuan_video", 16)
    if silence_attention:  # attention block output = x + proj_out(...): a zero projection makes it the identity
        for side in (module.encoder, module.decoder):
            side.mid.attn_1.proj_out.weight.data.zero_()
            side.mid.attn_1.proj_out.bias.data.zero_()
    path = tmp_path / "hunyuan_video.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    return module, load_vae(path, hash=False)


def test_hunyuan_video_in_comfyui_keys_decodes_one_frame_like_comfyui(comfy, tmp_path):
    """latentbridge loads ComfyUI's HunyuanVideo keys into diffusers' AutoencoderKLHunyuanVideo: one latent frame
    decodes as ComfyUI's own module decodes it."""
    module, vae = _hunyuan_video_pair(tmp_path, silence_attention=False)
    assert vae.format is get_format("hunyuan_video")
    torch.manual_seed(8)
    z = torch.randn(1, 16, 1, 4, 4)
    with torch.no_grad():
        ours, theirs = vae.decode(z), module.decode(z)
    assert ours.shape == theirs.shape == (1, 3, 1, 32, 32)
    assert (ours - theirs).abs().max() <= PARITY


def test_hunyuan_video_clips_differ_by_comfyuis_attention_and_chunked_decode(comfy, tmp_path):
    """Two ComfyUI departures from diffusers' AutoencoderKLHunyuanVideo (which follows the reference VAE), so
    multi-frame clips decode differently while the weights map exactly:

    1. the mid-block attention is not causal (comfy/ldm/modules/diffusionmodules/model.py pytorch_attention,
       is_causal=False over all frames); diffusers masks later frames. With attention made the identity in both,
       a 2-latent-frame clip decodes alike.
    2. the decoder is "carried" (model.py Decoder: CarriedConv3d when there is no attention at any level): after
       the mid block it decodes 2 latent frames at a time, carrying the causal convs' state but computing GroupNorm
       statistics per chunk. A 3-frame clip therefore still differs with attention silenced.
    """
    torch.manual_seed(8)
    z2, z3 = torch.randn(1, 16, 2, 4, 4), torch.randn(1, 16, 3, 4, 4)  # 5 and 9 video frames
    module, vae = _hunyuan_video_pair(tmp_path, silence_attention=False)
    with torch.no_grad():
        assert (vae.decode(z2) - module.decode(z2)).abs().max() > 1e-5  # 100× the one-frame difference (1.3e-7)
    module, vae = _hunyuan_video_pair(tmp_path, silence_attention=True)
    with torch.no_grad():
        assert (vae.decode(z2) - module.decode(z2)).abs().max() <= PARITY
        assert (vae.decode(z3) - module.decode(z3)).abs().max() > 1e-3  # per-chunk GroupNorm statistics


def _header(module: torch.nn.Module, name: str):
    """An in-memory safetensors header of a module's state dict (shapes only: no file, no tensor data)."""
    from pathlib import Path

    from latentbridge.weights import Header, TensorInfo

    state = module.state_dict()
    tensors = {k: TensorInfo(tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items()}
    return Header(Path(name), Path(name), "safetensors", tensors)


def _released(kind: str) -> torch.nn.Module:
    """ComfyUI's module for ``kind`` as comfy/sd.py's VAE builds it (meta device where the released size is big)."""
    if kind == "mochi":
        import comfy.ldm.genmo.vae.model as mochi

        with torch.device("meta"):
            return mochi.VideoVAE()
    if kind.startswith("ltxv"):
        import comfy.ldm.lightricks.vae.causal_video_autoencoder as ltx

        with torch.device("meta"):
            return ltx.VideoVAE(version=int(kind[-1]))
    if kind == "cosmos":  # comfy/sd.py's CV8x8x8 config with narrower channels (its patcher cannot be built on meta)
        import comfy.ldm.cosmos.vae as cosmos

        config = {"z_channels": 16, "latent_channels": 16, "z_factor": 1, "resolution": 1024, "in_channels": 3}
        config.update(out_channels=3, channels=32, channels_mult=[2, 4, 4], num_res_blocks=2, attn_resolutions=[32])
        config.update(dropout=0.0, patch_size=4, num_groups=1, temporal_compression=8, spacial_compression=8)
        return cosmos.CausalContinuousVideoTokenizer(**config)
    if kind == "stage_a":
        from comfy.ldm.cascade.stage_a import StageA

        with torch.device("meta"):
            return StageA()
    if kind == "svd":  # comfy/sd.py: the "decoder.mid.block_1.mix_factor" branch
        from comfy.ldm.models.autoencoder import AutoencodingEngine

        enc = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128}
        enc.update(ch_mult=[1, 2, 4, 4], num_res_blocks=2, attn_resolutions=[], dropout=0.0)
        dec = dict(enc, video_kernel_size=[3, 1, 1], alpha=0.0)
        with torch.device("meta"):
            return AutoencodingEngine(
                regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
                encoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Encoder", "params": enc},
                decoder_config={"target": "comfy.ldm.modules.temporal_ae.VideoDecoder", "params": dec},
            )
    raise ValueError(kind)


@pytest.mark.parametrize(
    ("kind", "signature", "fmt", "channels", "ratio"),
    [
        ("mochi", "autoencoder_mochi/comfyui", "mochi", 12, 8),
        ("ltxv0", "autoencoder_kl_ltx_video/original", "ltxv", 128, 32),
        ("ltxv1", "autoencoder_kl_ltx_video/original", "ltxv", 128, 32),
        ("ltxv2", "autoencoder_kl_ltx_video/original", "ltxv", 128, 32),
        ("cosmos", "cosmos_tokenizer/comfyui", "cosmos", 16, 8),
        ("stage_a", "vqgan_stage_a/comfyui", "cascade_b", 4, 4),
        ("svd", "autoencoder_kl_temporal_decoder/ldm", "sd1", 4, 8),
    ],
)
def test_other_vaes_comfyui_loads_are_identified(comfy, kind, signature, fmt, channels, ratio):
    """The remaining image/video VAEs of registered formats that comfy/sd.py's VAE accepts, in the keys its modules
    hold (what its VAESave writes): identified, with the format, and refused by load_vae with the reason."""
    from latentbridge.weights.info import identify

    info = identify(_header(_released(kind), f"{kind}.safetensors"), hash=False)
    assert info.matches == (signature,)
    assert (info.format, info.latent_channels, info.spatial_ratio) == (fmt, channels, ratio)
    assert info.has_encoder and info.has_decoder
    assert any("cannot load them yet" in n for n in info.notes)
