"""VAE key layouts that ComfyUI loads and writes: FLUX.2 as ComfyUI's VAESave writes it, HunyuanVideo in diffusers'
and ComfyUI's keys. Tiny real architectures (diffusers' own classes, random weights) are written in each layout,
identified from the header and loaded; the loaded VAE must compute what the original module computes.

That the test-written ComfyUI layouts are ComfyUI's own is checked against ComfyUI's modules and its VAESave node
in tests/comfy/test_comfy_vae_layouts.py (which needs ComfyUI's environment).
"""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKLHunyuanVideo
from safetensors.torch import save_file
from test_weights import PARITY, _flux2, to_ldm

from latentbridge.errors import WeightsError
from latentbridge.formats import get_format
from latentbridge.weights import describe, load_vae
from latentbridge.weights.keymaps import hunyuan_video_to_diffusers, rename


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: small 3-D convolutions run far slower when two threads contend for busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _hunyuan_video() -> AutoencoderKLHunyuanVideo:
    torch.manual_seed(11)  # HunyuanVideo's real structure (4 levels, 8× spatial, 4× temporal, mid attention)
    return AutoencoderKLHunyuanVideo(block_out_channels=(32, 64, 64, 64), layers_per_block=1).eval()


def to_comfy_flux2(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderKLFlux2 keys -> what ComfyUI's VAESave writes: LDM names, root quant convs, the
    BatchNorm buffers (with its step counter) as ``bn.*`` (comfy/ldm/models/autoencoder.py AutoencodingEngineLegacy)."""
    return to_ldm(state, 4, quant="top")


def to_comfy_hunyuan_video(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderKLHunyuanVideo keys -> ComfyUI's: LDM names (each causal conv keeps its ``.conv``) and
    attention projections as 1×1×1 convolutions."""
    out = {}
    for key, value in to_ldm(state, 4).items():
        if ".attn_1." in key and key.endswith(".weight") and value.ndim == 4:
            value = value[..., None]  # 1×1 -> 1×1×1: ComfyUI's 3-D attention uses Conv3d projections
        out[key] = value.contiguous()
    return out


def _save(path, state):
    save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, str(path))
    return path


CASES = {
    "flux2-comfyui": (_flux2, to_comfy_flux2, "autoencoder_kl_flux2/ldm", 32, 8, "flux2"),
    "hunyuan-video-diffusers": (_hunyuan_video, dict, "autoencoder_kl_hunyuan_video/diffusers", 16, 8, "hunyuan_video"),
    "hunyuan-video-comfyui": (
        _hunyuan_video,
        to_comfy_hunyuan_video,
        "autoencoder_kl_hunyuan_video/ldm",
        16,
        8,
        "hunyuan_video",
    ),
}


@pytest.fixture(scope="module", params=list(CASES))
def written(request, tmp_path_factory):
    build, convert, sig, channels, ratio, fmt = CASES[request.param]
    model = build()
    path = _save(tmp_path_factory.mktemp(request.param) / "vae.safetensors", convert(model.state_dict()))
    return model, path, sig, channels, ratio, fmt


def test_identify_comfyui_layouts(written):
    _model, path, sig, channels, ratio, fmt = written
    info = describe(path, hash=False)
    assert info.matches == (sig,)
    assert (info.latent_channels, info.spatial_ratio, info.dims) == (channels, ratio, get_format(fmt).dims)
    assert info.has_encoder and info.has_decoder
    assert (info.format, info.format_source) == (fmt, "geometry")
    assert "unknown" not in info.render()


def test_load_comfyui_layouts_matches_the_original_module(written):
    model, path, _sig, channels, ratio, fmt = written
    vae = load_vae(path, hash=False)
    torch.manual_seed(7)
    video = get_format(fmt).dims == 3
    z = torch.randn(1, channels, *((2,) if video else ()), 32 // ratio, 32 // ratio)
    x = torch.rand(1, 3, *((5,) if video else ()), 32, 32) * 2 - 1  # 5 frames = 2 latent frames (4n+1)
    with torch.no_grad():
        assert (vae.decode(z) - model.decode(z).sample).abs().max() <= PARITY
        assert (vae.encode(x) - model.encode(x).latent_dist.mean).abs().max() <= PARITY
    assert (vae.native_space, vae.channels, vae.spatial_ratio, vae.dims) == ("raw", channels, ratio, z.ndim - 2)
    assert vae.format is get_format(fmt)


def test_comfyui_flux2_file_keeps_its_batchnorm_statistics(tmp_path):
    model = _flux2()
    vae = load_vae(_save(tmp_path / "vae.safetensors", to_comfy_flux2(model.state_dict())), hash=False)
    eps = get_format("flux2").norm_eps  # 1e-4, ComfyUI's bn_eps and diffusers' batch_norm_eps
    assert torch.equal(vae.stats.mean, model.bn.running_mean)
    assert torch.allclose(vae.stats.std, (model.bn.running_var + eps).sqrt())


def test_hunyuan_video_decoder_only_file(tmp_path):
    model = _hunyuan_video()
    state = {k: v for k, v in to_comfy_hunyuan_video(model.state_dict()).items() if k.startswith(("decoder.", "post"))}
    path = _save(tmp_path / "decoder.safetensors", state)
    info = describe(path, hash=False)
    assert (info.matches, info.has_encoder, info.has_decoder) == (("autoencoder_kl_hunyuan_video/ldm",), False, True)
    vae = load_vae(path, part="decoder", hash=False)
    z = torch.randn(1, 16, 2, 4, 4)
    with torch.no_grad():
        assert (vae.decode(z) - model.decode(z).sample).abs().max() <= PARITY
    assert vae.encode is None


def test_hunyuan_video_map_adds_the_causal_conv_level():
    keymap = hunyuan_video_to_diffusers(4)
    pairs = {
        "encoder.conv_in.conv.weight": "encoder.conv_in.conv.weight",
        "encoder.down.1.block.0.nin_shortcut.conv.bias": "encoder.down_blocks.1.resnets.0.conv_shortcut.conv.bias",
        "encoder.down.0.downsample.conv.conv.weight": "encoder.down_blocks.0.downsamplers.0.conv.conv.weight",
        "encoder.mid.attn_1.q.weight": "encoder.mid_block.attentions.0.to_q.weight",
        "decoder.up.3.upsample.conv.conv.weight": "decoder.up_blocks.0.upsamplers.0.conv.conv.weight",
        "decoder.up.0.block.1.conv2.conv.weight": "decoder.up_blocks.3.resnets.1.conv2.conv.weight",
        "decoder.norm_out.weight": "decoder.conv_norm_out.weight",
        "quant_conv.weight": "quant_conv.weight",
    }
    assert {k: rename(k, keymap) for k in pairs} == pairs


def test_kl_signature_does_not_claim_a_file_whose_first_downsample_is_not_square(tmp_path):
    """HunyuanImage 2.1's VAE shares the LDM key names of a quant-conv-free KL VAE (FLUX.1's), but its first
    downsample conv maps to a quarter of the next width and its decoder upsamples at level 0: no AutoencoderKL
    signature may claim such a file (before, `autoencoder_kl/bfl` did). ComfyUI's real layout is checked in
    tests/comfy/test_comfy_vae_layouts.py."""
    state = to_ldm(_flux2_free_kl_state(), 4)
    w = state["encoder.down.0.downsample.conv.weight"]
    state["encoder.down.0.downsample.conv.weight"] = w[: w.shape[0] // 4].clone()
    state["encoder.down.0.downsample.conv.bias"] = state["encoder.down.0.downsample.conv.bias"][: w.shape[0] // 4]
    for name, shape in (("weight", (256, 64, 3, 3)), ("bias", (256,))):  # a level-0 pixel-shuffle upsample
        state[f"decoder.up.0.upsample.conv.{name}"] = torch.zeros(shape)
    info = describe(_save(tmp_path / "vae.safetensors", state), hash=False)
    assert info.matches == ("autoencoder_hunyuan_dcae/comfyui",)
    with pytest.raises(WeightsError, match="identifies it but cannot load"):
        load_vae(tmp_path / "vae.safetensors", hash=False)


def _flux2_free_kl_state() -> dict[str, torch.Tensor]:
    from test_weights import _kl

    return _kl(16, quant=False).state_dict()
