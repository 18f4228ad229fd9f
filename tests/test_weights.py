"""latentbridge.weights: identify weight files from headers, load them offline and strictly.

Real architectures with random weights and tiny widths (diffusers' own classes) are written by these tests
in every key layout latentbridge reads; each is identified and loaded, and the loaded VAE must compute what
the original module computes. The test-written LDM and Wan files are checked against diffusers' own
converters, so the layouts are the real ones, not our inverse of our own maps.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys

import numpy as np
import pytest
import torch
from diffusers import AutoencoderDC, AutoencoderKL, AutoencoderKLFlux2, AutoencoderKLWan
from diffusers.loaders.single_file_utils import (
    convert_autoencoder_dc_checkpoint_to_diffusers,
    convert_ldm_vae_checkpoint,
    convert_wan_vae_to_diffusers,
)
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from latentbridge.cli import app
from latentbridge.errors import FileFormatError, IncompatibleError, UnknownFormatError, WeightsError
from latentbridge.formats import formats, get_format
from latentbridge.weights import SIGNATURES, describe, detect, load_vae, read_header, sha256_file
from latentbridge.weights import info as info_mod
from latentbridge.weights.hashes import KNOWN_FILES, known_file
from latentbridge.weights.keymaps import (
    DCAE_FUSED,
    ldm_to_diffusers,
    remap,
    rename,
    split_fused,
    split_fused_shapes,
    wan22_to_diffusers,
)
from latentbridge.weights.load import _keymap

# Same module class, same weights, same inputs: outputs agree to float32 rounding of identical op orders.
PARITY = 1e-5


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these small convolutions run ~100× slower when two threads contend for busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- tiny real architectures -----------------------------------------------------------------------------


def _kl(latent: int, quant: bool = True) -> AutoencoderKL:
    torch.manual_seed(latent)
    return AutoencoderKL(
        block_out_channels=(32, 64, 64, 64),  # 32 -> 64 gives the encoder and decoder a shortcut conv
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=latent,
        norm_num_groups=32,
        use_quant_conv=quant,
        use_post_quant_conv=quant,
    ).eval()


def _flux2() -> AutoencoderKLFlux2:
    torch.manual_seed(2)
    model = AutoencoderKLFlux2(block_out_channels=(32, 64, 64, 64), layers_per_block=1, latent_channels=32)
    model.bn.running_mean.normal_()
    model.bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _wan() -> AutoencoderKLWan:
    torch.manual_seed(3)  # Wan 2.1's real structure (dim_mult, res blocks, temporal downsampling), tiny widths
    return AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2).eval()


def _wan22() -> AutoencoderKLWan:
    torch.manual_seed(5)  # Wan 2.2 TI2V's structure (residual blocks, 2×2 patchify, 48 channels), tiny widths
    return AutoencoderKLWan(
        base_dim=8,
        decoder_base_dim=12,
        z_dim=48,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=2,
        is_residual=True,
        in_channels=12,
        out_channels=12,
        patch_size=2,
        scale_factor_spatial=16,
    ).eval()


def _dc(resample: str) -> AutoencoderDC:
    torch.manual_seed(4)
    vit = ("ResBlock",) * 3 + ("EfficientViTBlock",) * 3
    if resample == "in":  # DC-AE f32c32-in/mix: no first-stage blocks, BatchNorm + ReLU in the decoder's first stages
        return AutoencoderDC(  # no multiscale branch, so the head width is not in the shapes: the default 32
            latent_channels=32,
            encoder_block_types=vit,
            decoder_block_types=vit,
            encoder_block_out_channels=(8, 8, 16, 32, 32, 32),
            decoder_block_out_channels=(8, 8, 16, 32, 32, 32),
            encoder_layers_per_block=(0, 1, 1, 1, 1, 1),
            decoder_layers_per_block=(0, 1, 1, 1, 1, 1),
            encoder_qkv_multiscales=((),) * 6,
            decoder_qkv_multiscales=((),) * 6,
            decoder_norm_types=("batch_norm",) * 3 + ("rms_norm",) * 3,
            decoder_act_fns=("relu",) * 3 + ("silu",) * 3,
        ).eval()
    return AutoencoderDC(
        latent_channels=32,
        attention_head_dim=8,
        encoder_block_types=vit,
        decoder_block_types=vit,
        encoder_block_out_channels=(8, 8, 16, 16, 32, 32),
        decoder_block_out_channels=(8, 8, 16, 16, 32, 32),
        encoder_layers_per_block=(1, 1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1, 2),
        encoder_qkv_multiscales=((), (), (), (5,), (5,), (5,)),
        decoder_qkv_multiscales=((), (), (), (5,), (5,), (5,)),
        upsample_block_type="pixel_shuffle" if resample == "shuffle" else "interpolate",
        downsample_block_type="pixel_unshuffle" if resample == "shuffle" else "Conv",
    ).eval()


# --- writing the layouts ---------------------------------------------------------------------------------

_LDM_NAMES = (
    ("down_blocks.", "down."),
    ("mid_block.resnets.0.", "mid.block_1."),
    ("mid_block.resnets.1.", "mid.block_2."),
    ("mid_block.attentions.0.group_norm.", "mid.attn_1.norm."),
    ("mid_block.attentions.0.to_q.", "mid.attn_1.q."),
    ("mid_block.attentions.0.to_k.", "mid.attn_1.k."),
    ("mid_block.attentions.0.to_v.", "mid.attn_1.v."),
    ("mid_block.attentions.0.to_out.0.", "mid.attn_1.proj_out."),
    ("resnets.", "block."),
    ("downsamplers.0.", "downsample."),
    ("upsamplers.0.", "upsample."),
    ("conv_shortcut", "nin_shortcut"),
    ("conv_norm_out", "norm_out"),
)


def to_ldm(state: dict[str, torch.Tensor], levels: int, quant: str = "top") -> dict[str, torch.Tensor]:
    """diffusers AutoencoderKL keys -> original LDM/SGM keys (``quant="inner"``: BFL FLUX.2's nesting)."""
    out = {}
    for key, value in state.items():
        new = key
        m = re.fullmatch(r"decoder\.up_blocks\.(\d+)\.(.+)", key)
        if m:
            new = f"decoder.up.{levels - 1 - int(m[1])}.{m[2]}"
        for a, b in _LDM_NAMES:
            new = new.replace(a, b)
        if quant == "inner" and new.startswith(("quant_conv.", "post_quant_conv.")):
            new = ("encoder." if new.startswith("quant") else "decoder.") + new
        if ".attn_1." in new and new.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]  # LDM attention projections are 1×1 convolutions
        out[new] = value.contiguous()
    return out


_WAN_RES = (("norm1.gamma", "residual.0.gamma"), ("conv1.", "residual.2."), ("norm2.gamma", "residual.3.gamma"))
_WAN_RES += (("conv2.", "residual.6."), ("conv_shortcut.", "shortcut."))


def to_wan_original(state: dict[str, torch.Tensor], num_res_blocks: int) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderKLWan keys -> the original Wan 2.1 release's keys."""
    out = {}
    per = num_res_blocks + 2  # resnets + upsampler per decoder level
    for key, value in state.items():
        new = key
        for a, b in (
            ("encoder.conv_in.", "encoder.conv1."),
            ("decoder.conv_in.", "decoder.conv1."),
            ("post_quant_conv.", "conv2."),
            ("quant_conv.", "conv1."),
            ("norm_out.gamma", "head.0.gamma"),
            ("conv_out.", "head.2."),
            ("mid_block.resnets.0.", "middle.0."),
            ("mid_block.attentions.0.", "middle.1."),
            ("mid_block.resnets.1.", "middle.2."),
            ("encoder.down_blocks.", "encoder.downsamples."),
        ):
            if new.startswith(a) or (a.startswith(("norm_out", "conv_out", "mid_block")) and a in new):
                new = new.replace(a, b, 1)
        m = re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", new)
        if m:
            new = f"decoder.upsamples.{int(m[1]) * per + int(m[2])}.{m[3]}"
        m = re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)", new)
        if m:
            new = f"decoder.upsamples.{int(m[1]) * per + per - 1}.{m[2]}"
        if re.match(r"(encoder|decoder)\.(downsamples|upsamples|middle\.[02])\.", new):
            for a, b in _WAN_RES:
                new = new.replace(a, b)
        out[new] = value.contiguous()
    return out


def _wan_resnet_names(key: str) -> str:
    for a, b in _WAN_RES:
        key = key.replace(a, b)
    return key


def to_wan22_original(state: dict[str, torch.Tensor], num_res_blocks: int) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderKLWan (is_residual) keys -> the original Wan 2.2 release's keys (Wan2.2_VAE.pth).

    Written from the public Wan 2.2 code (each level a block with its own ``downsamples``/``upsamples`` list:
    resnets, then the resample) and diffusers' convert_vae_22 mapping; independent of latentbridge's key map.
    """
    out = {}
    for key, value in state.items():
        new = key
        for a, b in (
            ("encoder.conv_in.", "encoder.conv1."),
            ("decoder.conv_in.", "decoder.conv1."),
            ("post_quant_conv.", "conv2."),
            ("quant_conv.", "conv1."),
        ):
            if new.startswith(a):
                new = b + new[len(a) :]
        new = new.replace("norm_out.gamma", "head.0.gamma").replace("conv_out.", "head.2.")
        new = new.replace("mid_block.resnets.0.", "middle.0.").replace("mid_block.resnets.1.", "middle.2.")
        new = new.replace("mid_block.attentions.0.", "middle.1.")
        if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.(?:resnets\.(\d+)\.(.+)|downsampler\.(.+))", new):
            new = (
                f"encoder.downsamples.{m[1]}.downsamples.{m[2]}.{_wan_resnet_names(m[3])}"
                if m[2] is not None
                else f"encoder.downsamples.{m[1]}.downsamples.{num_res_blocks}.{m[4]}"
            )
        if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.(?:resnets\.(\d+)\.(.+)|upsampler\.(.+))", new):
            new = (
                f"decoder.upsamples.{m[1]}.upsamples.{m[2]}.{_wan_resnet_names(m[3])}"
                if m[2] is not None
                else f"decoder.upsamples.{m[1]}.upsamples.{num_res_blocks + 1}.{m[4]}"
            )
        if re.match(r"(encoder|decoder)\.middle\.[02]\.", new):
            new = _wan_resnet_names(new)
        out[new] = value.contiguous()
    return out


# diffusers AutoencoderDC names -> original efficientvit names, inside one stage entry (ResBlock, EfficientViT
# block, resampler); from efficientvit's dc_ae.py / ops.py module structure.
_DC_ENTRY = (
    (r"conv1\.(\w+)", "main.conv1.conv.{}"),
    (r"conv2\.(\w+)", "main.conv2.conv.{}"),
    (r"norm\.(\w+)", "main.conv2.norm.{}"),
    (r"attn\.to_qkv_multiscale\.(\d+)\.proj_in\.(\w+)", "context_module.main.aggreg.{}.0.{}"),
    (r"attn\.to_qkv_multiscale\.(\d+)\.proj_out\.(\w+)", "context_module.main.aggreg.{}.1.{}"),
    (r"attn\.to_out\.(\w+)", "context_module.main.proj.conv.{}"),
    (r"attn\.norm_out\.(\w+)", "context_module.main.proj.norm.{}"),
    (r"conv_out\.conv_inverted\.(\w+)", "local_module.main.inverted_conv.conv.{}"),
    (r"conv_out\.conv_depth\.(\w+)", "local_module.main.depth_conv.conv.{}"),
    (r"conv_out\.conv_point\.(\w+)", "local_module.main.point_conv.conv.{}"),
    (r"conv_out\.norm\.(\w+)", "local_module.main.point_conv.norm.{}"),
)
_DC_TOP = {
    "encoder.conv_in.": "encoder.project_in.conv.",  # also encoder.conv_in.conv.* -> project_in.conv.conv.*
    "encoder.conv_out.": "encoder.project_out.main.op_list.0.conv.",
    "decoder.conv_in.": "decoder.project_in.main.conv.",
    "decoder.norm_out.": "decoder.project_out.op_list.0.",
    "decoder.conv_out.": "decoder.project_out.op_list.2.conv.",
}


def to_dc_original(state: dict[str, torch.Tensor], conv_down: bool) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderDC keys -> the original mit-han-lab/efficientvit DC-AE keys.

    ``conv_down``: the encoder resamples with a plain strided ConvLayer (Sana's DC-AE) instead of a
    conv + pixel-unshuffle layer (which nests one more ``.conv``). q, k and v are fused into one 1×1 conv,
    linear layers become 1×1 convs, as efficientvit stores them.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = re.fullmatch(r"(encoder|decoder)\.(?:down|up)_blocks\.(\d+)\.(\d+)\.(.+)", key)
        if m is None:
            top = next(t for t in _DC_TOP if key.startswith(t))
            out[_DC_TOP[top] + key[len(top) :]] = value.contiguous()
            continue
        head, rest = f"{m[1]}.stages.{m[2]}.op_list.{m[3]}", m[4]
        if rest.startswith("attn.to_k.") or rest.startswith("attn.to_v."):
            continue  # fused with to_q below
        if rest == "attn.to_q.weight":
            qkv = [state[key.replace("to_q", n)] for n in ("to_q", "to_k", "to_v")]
            out[f"{head}.context_module.main.qkv.conv.weight"] = torch.cat(qkv)[:, :, None, None].contiguous()
            continue
        if rest.startswith("conv."):  # a resampler
            nested = m[1] == "decoder" or not conv_down
            out[f"{head}.main.conv.{'conv.' if nested else ''}{rest[5:]}"] = value.contiguous()
            continue
        pattern, target = next((p, t) for p, t in _DC_ENTRY if re.fullmatch(p, rest))
        if rest == "attn.to_out.weight":
            value = value[:, :, None, None]
        out[f"{head}.{target.format(*re.fullmatch(pattern, rest).groups())}"] = value.contiguous()
    return out


def _save(path, state, metadata=None):
    save_file({k: v.detach().clone() for k, v in state.items()}, str(path), metadata=metadata)
    return path


# (name, builder, writer(model, tmp) -> path, expected signature, channels, ratio, candidate formats)
def _write_diffusers(model, tmp):
    return _save(tmp / "vae.safetensors", model.state_dict())


def _write_ldm(model, tmp):
    return _save(tmp / "vae.safetensors", to_ldm(model.state_dict(), 4))


def _write_bfl_flux2(model, tmp):
    state = to_ldm(model.state_dict(), 4, quant="inner")
    del state["bn.num_batches_tracked"]  # BFL files may omit BatchNorm's step counter
    return _save(tmp / "ae.safetensors", state)


def _write_wan_original(model, tmp):
    return _save(tmp / "wan_2.1_vae.safetensors", to_wan_original(model.state_dict(), 2))


def _write_wan22_original(model, tmp):
    return _save(tmp / "wan2.2_vae.safetensors", to_wan22_original(model.state_dict(), 2))


def _write_dc_original(model, tmp):
    conv_down = model.config.downsample_block_type.lower() == "conv"
    return _save(tmp / "model.safetensors", to_dc_original(model.state_dict(), conv_down))


def _write_ckpt(model, tmp):
    state = {f"first_stage_model.{k}": v for k, v in to_ldm(model.state_dict(), 4).items()}
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(8, 4, 3, 3)
    state["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.zeros(1, 77)
    torch.save({"state_dict": state, "global_step": 1}, tmp / "model.ckpt")  # a Lightning-style .ckpt
    return tmp / "model.ckpt"


CASES = {
    "kl4-diffusers": (
        lambda: _kl(4),
        _write_diffusers,
        "autoencoder_kl/diffusers",
        4,
        8,
        ("sd1", "sdxl", "playground25"),
    ),
    "kl4-ldm": (lambda: _kl(4), _write_ldm, "autoencoder_kl/ldm", 4, 8, ("sd1", "sdxl", "playground25")),
    "kl4-checkpoint": (lambda: _kl(4), _write_ckpt, "autoencoder_kl/ldm", 4, 8, ("sd1", "sdxl", "playground25")),
    "kl16-bfl": (lambda: _kl(16, quant=False), _write_ldm, "autoencoder_kl/bfl", 16, 8, ("sd3", "flux1")),
    "kl16-diffusers": (
        lambda: _kl(16, quant=False),
        _write_diffusers,
        "autoencoder_kl/diffusers",
        16,
        8,
        ("sd3", "flux1"),
    ),
    "flux2-diffusers": (_flux2, _write_diffusers, "autoencoder_kl_flux2/diffusers", 32, 8, ("flux2",)),
    "flux2-bfl": (_flux2, _write_bfl_flux2, "autoencoder_kl_flux2/bfl", 32, 8, ("flux2",)),
    "wan21-diffusers": (_wan, _write_diffusers, "autoencoder_kl_wan/diffusers", 16, 8, ("wan21",)),
    "wan21-original": (_wan, _write_wan_original, "autoencoder_kl_wan/wan", 16, 8, ("wan21",)),
    "wan22-diffusers": (_wan22, _write_diffusers, "autoencoder_kl_wan+residual/diffusers", 48, 16, ("wan22",)),
    "wan22-original": (_wan22, _write_wan22_original, "autoencoder_kl_wan+residual/wan", 48, 16, ("wan22",)),
    "dc-shuffle": (lambda: _dc("shuffle"), _write_diffusers, "autoencoder_dc/diffusers", 32, 32, ("sana",)),
    "dc-interpolate": (lambda: _dc("interpolate"), _write_diffusers, "autoencoder_dc/diffusers", 32, 32, ("sana",)),
    "dc-in": (lambda: _dc("in"), _write_diffusers, "autoencoder_dc/diffusers", 32, 32, ("sana",)),
    "dc-shuffle-original": (
        lambda: _dc("shuffle"),
        _write_dc_original,
        "autoencoder_dc/efficientvit",
        32,
        32,
        ("sana",),
    ),
    "dc-interpolate-original": (
        lambda: _dc("interpolate"),
        _write_dc_original,
        "autoencoder_dc/efficientvit",
        32,
        32,
        ("sana",),
    ),
    "dc-in-original": (lambda: _dc("in"), _write_dc_original, "autoencoder_dc/efficientvit", 32, 32, ("sana",)),
}


@pytest.fixture(scope="module", params=list(CASES))
def written(request, tmp_path_factory):
    build, write, sig, channels, ratio, cands = CASES[request.param]
    model = build()
    path = write(model, tmp_path_factory.mktemp(request.param))
    return request.param, model, path, sig, channels, ratio, cands


def _latents(model, channels: int, ratio: int) -> torch.Tensor:
    torch.manual_seed(7)
    if isinstance(model, AutoencoderKLWan):
        return torch.randn(1, channels, 2, 32 // ratio, 32 // ratio)  # 2 latent frames = 5 video frames
    return torch.randn(1, channels, 32 // ratio, 32 // ratio)


def _reference_decode(model, z):
    return model.decode(z).sample


def _reference_encode(model, x):
    out = model.encode(x)
    return out.latent if isinstance(model, AutoencoderDC) else out.latent_dist.mean


# --- identification --------------------------------------------------------------------------------------


def test_written_layouts_are_the_real_ones():
    """Our test writers produce what diffusers' own converters read back to the original state dict."""
    kl = _kl(4)
    back = convert_ldm_vae_checkpoint(to_ldm(kl.state_dict(), 4), dict(kl.config))
    want = kl.state_dict()
    assert sorted(back) == sorted(want)
    assert all(torch.equal(back[k].reshape(want[k].shape), want[k]) for k in want)
    wan = _wan()
    back = convert_wan_vae_to_diffusers(to_wan_original(wan.state_dict(), 2))
    want = wan.state_dict()
    assert sorted(back) == sorted(want)
    assert all(torch.equal(back[k], want[k]) for k in want)


@pytest.mark.parametrize("resample", ["shuffle", "interpolate", "in"])
def test_written_dc_original_layout_is_the_real_one(resample):
    """diffusers' own DC-AE converter (efficientvit keys -> AutoencoderDC) reads our written file back exactly."""
    dc = _dc(resample)
    original = to_dc_original(dc.state_dict(), conv_down=dc.config.downsample_block_type.lower() == "conv")
    assert "encoder.stages.0.op_list.0.main.conv1.conv.weight" in original or resample == "in"
    back = convert_autoencoder_dc_checkpoint_to_diffusers(dict(original))
    want = dc.state_dict()
    assert sorted(back) == sorted(want)
    assert all(torch.equal(back[k].reshape(want[k].shape), want[k]) for k in want)


def test_written_wan22_original_layout_has_the_release_names():
    """No converter for Wan 2.2's original keys ships with diffusers, so the names are checked one by one against
    the public Wan 2.2 module structure (Encoder3d/Decoder3d with Down_/Up_ResidualBlock lists; temporal
    down-sampling [False, True, True], so time convs sit in encoder levels 1-2 and decoder levels 0-1)."""
    keys = set(to_wan22_original(_wan22().state_dict(), 2))
    present = [
        "encoder.conv1.weight",
        "encoder.downsamples.0.downsamples.0.residual.0.gamma",
        "encoder.downsamples.0.downsamples.1.residual.6.weight",
        "encoder.downsamples.0.downsamples.2.resample.1.weight",
        "encoder.downsamples.1.downsamples.0.shortcut.weight",
        "encoder.downsamples.1.downsamples.2.time_conv.weight",
        "encoder.downsamples.3.downsamples.1.residual.3.gamma",
        "encoder.middle.1.to_qkv.weight",
        "encoder.middle.2.residual.2.bias",
        "encoder.head.0.gamma",
        "encoder.head.2.weight",
        "conv1.weight",
        "conv2.weight",
        "decoder.conv1.weight",
        "decoder.middle.0.residual.0.gamma",
        "decoder.upsamples.0.upsamples.2.residual.6.bias",
        "decoder.upsamples.0.upsamples.3.time_conv.weight",
        "decoder.upsamples.2.upsamples.0.shortcut.weight",
        "decoder.upsamples.2.upsamples.3.resample.1.weight",
        "decoder.head.2.weight",
    ]
    absent = [
        "encoder.downsamples.0.downsamples.2.time_conv.weight",
        "encoder.downsamples.3.downsamples.2.resample.1.weight",
        "decoder.upsamples.2.upsamples.3.time_conv.weight",
        "decoder.upsamples.3.upsamples.3.resample.1.weight",
    ]
    assert [k for k in present if k not in keys] == []
    assert [k for k in absent if k in keys] == []
    assert all(
        re.fullmatch(r"(encoder|decoder)\.(conv1|head|middle|downsamples|upsamples)\..+|conv[12]\.(weight|bias)", k)
        for k in keys
    )


def test_identify_every_layout(written):
    name, _model, path, sig, channels, ratio, cands = written
    info = describe(path, hash=False)
    assert info.matches == (sig,)
    assert info.architecture == sig.split("/")[0].split("+")[0]
    assert (info.latent_channels, info.spatial_ratio) == (channels, ratio)
    assert info.has_encoder and info.has_decoder and info.has_vae
    assert info.formats == cands
    assert info.format == (cands[0] if len(cands) == 1 else None)
    assert info.checkpoint == (name == "kl4-checkpoint")
    assert info.prefix == ("first_stage_model." if name == "kl4-checkpoint" else "")
    assert info.parameters > 0 and info.dtype == "float32"
    json.dumps(info.to_dict())  # --json must serialise
    assert info.render().splitlines() == info.lines()


def test_load_every_layout_matches_the_original_module(written):
    _name, model, path, _sig, channels, ratio, _cands = written
    vae = load_vae(path, hash=False)
    z = _latents(model, channels, ratio)
    with torch.no_grad():
        assert (vae.decode(z) - _reference_decode(model, z)).abs().max() <= PARITY
        x = torch.rand(1, 3, *((5,) if z.ndim == 5 else ()), 32, 32) * 2 - 1
        assert (vae.encode(x) - _reference_encode(model, x)).abs().max() <= PARITY
    assert vae.native_space == "raw" and vae.channels == channels and vae.spatial_ratio == ratio
    assert vae.dims == z.ndim - 2
    assert not any(p.requires_grad for p in vae.module.parameters())


def _meta_shapes(model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _on_meta(cls, **config):
    with torch.device("meta"):
        return cls(**config)


_SD = {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2}
_SD["down_block_types"], _SD["up_block_types"] = ("DownEncoderBlock2D",) * 4, ("UpDecoderBlock2D",) * 4
_DC_SANA = {"upsample_block_type": "interpolate", "downsample_block_type": "Conv"}
_DC_SANA["encoder_block_types"] = _DC_SANA["decoder_block_types"] = ("ResBlock",) * 3 + ("EfficientViTBlock",) * 3
_DC_IN = {**_DC_SANA, "encoder_layers_per_block": (0, 4, 8, 2, 2, 2), "decoder_layers_per_block": (0, 5, 10, 2, 2, 2)}
_DC_IN["decoder_norm_types"] = ("batch_norm",) * 3 + ("rms_norm",) * 3
_DC_IN["decoder_act_fns"] = ("relu",) * 3 + ("silu",) * 3
_WAN22 = {"base_dim": 160, "decoder_base_dim": 256, "z_dim": 48, "is_residual": True, "patch_size": 2}
_WAN22 |= {"in_channels": 12, "out_channels": 12, "scale_factor_spatial": 16}

# Published configurations at full size, built on the meta device (no weights): (class, config, key rename,
# signature, channels, ratio). The renames write the original layouts' key names.
REAL_SCALE = {
    "sd-vae": (AutoencoderKL, _SD, None, "autoencoder_kl/diffusers", 4, 8),
    "sdxl-vae-ldm": (AutoencoderKL, _SD, "ldm", "autoencoder_kl/ldm", 4, 8),
    "flux1-ae-bfl": (
        AutoencoderKL,
        {**_SD, "latent_channels": 16, "use_quant_conv": False, "use_post_quant_conv": False},
        "ldm",
        "autoencoder_kl/bfl",
        16,
        8,
    ),
    "sd3-vae": (
        AutoencoderKL,
        {**_SD, "latent_channels": 16, "use_quant_conv": False, "use_post_quant_conv": False},
        None,
        "autoencoder_kl/diffusers",
        16,
        8,
    ),
    "flux2-vae": (AutoencoderKLFlux2, {}, None, "autoencoder_kl_flux2/diffusers", 32, 8),
    "flux2-ae-bfl": (AutoencoderKLFlux2, {}, "bfl2", "autoencoder_kl_flux2/bfl", 32, 8),
    "wan21-vae": (AutoencoderKLWan, {}, None, "autoencoder_kl_wan/diffusers", 16, 8),
    "wan21-vae-original": (AutoencoderKLWan, {}, "wan", "autoencoder_kl_wan/wan", 16, 8),
    "wan22-vae": (AutoencoderKLWan, _WAN22, None, "autoencoder_kl_wan+residual/diffusers", 48, 16),
    "dc-ae-sana": (AutoencoderDC, _DC_SANA, None, "autoencoder_dc/diffusers", 32, 32),
    "dc-ae-in": (AutoencoderDC, _DC_IN, None, "autoencoder_dc/diffusers", 32, 32),
    "wan22-vae-original": (AutoencoderKLWan, _WAN22, "wan22", "autoencoder_kl_wan+residual/wan", 48, 16),
    "dc-ae-sana-original": (AutoencoderDC, _DC_SANA, "efficientvit", "autoencoder_dc/efficientvit", 32, 32),
    "dc-ae-in-original": (AutoencoderDC, _DC_IN, "efficientvit", "autoencoder_dc/efficientvit", 32, 32),
}


@pytest.mark.parametrize("name", list(REAL_SCALE))
def test_real_scale_architectures_identify_and_derive_their_config(name, tmp_path):
    """Full-size published configs: identified from shapes alone, and the config derived from those shapes
    rebuilds a module with exactly the same tensors (and, for DC-AE, the same norms and activations)."""
    from latentbridge.weights._header import Header, TensorInfo
    from latentbridge.weights.load import dc_config, kl_config, wan_config

    cls, config, rename_to, sig, channels, ratio = REAL_SCALE[name]
    model = _on_meta(cls, **config)
    state = model.state_dict()
    if rename_to in ("ldm", "bfl2"):
        state = to_ldm(state, 4, quant="inner" if rename_to == "bfl2" else "top")
    elif rename_to == "wan":
        state = to_wan_original(state, 2)
    elif rename_to == "wan22":
        state = to_wan22_original(state, 2)
    elif rename_to == "efficientvit":
        state = to_dc_original(state, conv_down=config.get("downsample_block_type") == "Conv")
    header = Header(
        tmp_path, tmp_path, "safetensors", {k: TensorInfo(tuple(v.shape), "float16") for k, v in state.items()}
    )
    matches = detect(header)
    assert [(m.name, m.channels, m.spatial_ratio) for m in matches] == [(sig, channels, ratio)]
    shapes = _meta_shapes(model)
    if rename_to in ("wan22", "efficientvit"):  # the original names map back onto every diffusers tensor
        keymap, fused = _keymap(matches[0].signature, list(state))
        renamed = split_fused_shapes({rename(k, keymap): tuple(v.shape) for k, v in state.items()}, fused)
        assert sorted(renamed) == sorted(shapes)
        for key, want in shapes.items():  # efficientvit stores linear layers as 1×1 convolutions
            assert renamed[key][: len(want)] == want and set(renamed[key][len(want) :]) <= {1}, key
    arch, _, variant = sig.split("/")[0].partition("+")
    if arch == "autoencoder_dc":
        derived = dc_config(shapes, channels)
    elif arch == "autoencoder_kl_wan":
        derived = wan_config(shapes, channels, residual=variant == "residual")
    else:
        derived = kl_config(shapes, channels, flux2=arch == "autoencoder_kl_flux2")
    rebuilt = _on_meta(cls, **derived)
    assert _meta_shapes(rebuilt) == shapes
    if cls is AutoencoderDC:  # norms and activations: per stage, whether given as one string or a list
        used = [i for i, n in enumerate(model.config.decoder_layers_per_block) if n]  # stages holding blocks

        def per_stage(value):
            return [((value,) * 6 if isinstance(value, str) else tuple(value))[i] for i in used]

        for key in ("decoder_norm_types", "decoder_act_fns"):
            assert per_stage(rebuilt.config[key]) == per_stage(model.config[key]), key
        for key in ("upsample_block_type", "downsample_block_type"):
            assert rebuilt.config[key] == model.config[key], key


def test_stored_config_is_used(tmp_path):
    """Zoo files store their diffusers config in the safetensors metadata: GroupNorm groups are not in shapes."""
    torch.manual_seed(9)
    config = {
        "block_out_channels": [16, 32, 48, 96],
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 16,
        "mid_block_add_attention": False,
    }
    model = AutoencoderKL(**config).eval()
    bare = _save(tmp_path / "bare.safetensors", model.state_dict())
    with pytest.raises(
        WeightsError, match=r"cannot build AutoencoderKL .* pass a diffusers folder with its config.json"
    ):
        load_vae(bare, hash=False)
    path = _save(
        tmp_path / "zoo.safetensors", model.state_dict(), {"config": json.dumps(config), "latentbridge.format": "sd1"}
    )
    vae = load_vae(path, hash=False)
    z = torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        assert (vae.decode(z) - model.decode(z).sample).abs().max() <= PARITY
    broken = _save(tmp_path / "broken.safetensors", model.state_dict(), {"config": "{not json"})
    with pytest.raises(FileFormatError, match=r"damaged safetensors metadata 'config' \(not valid JSON"):
        load_vae(broken, hash=False)


def test_flux2_stats_come_from_batchnorm(tmp_path):
    model = _flux2()
    vae = load_vae(_write_bfl_flux2(model, tmp_path), hash=False)
    assert vae.format is get_format("flux2")
    assert torch.equal(vae.stats.mean, model.bn.running_mean)
    eps = get_format("flux2").norm_eps  # 1e-4, the FLUX.2 BatchNorm epsilon
    assert torch.allclose(vae.stats.std, (model.bn.running_var + eps).sqrt())
    assert vae.stats.mean.numel() == get_format("flux2").model_channels


def test_signature_table_is_declarative():
    names = [s.name for s in SIGNATURES]
    assert len(set(names)) == len(names)
    reg = formats()
    for sig in SIGNATURES:
        assert sig.parts and all(p.anchors for p in sig.parts)
        assert set(sig.serves) <= set(reg), sig.name
        assert sig.native_space in ("raw", "model") and sig.dims in (2, 3)


def test_detect_reports_every_match(tmp_path):
    """A file carrying two layouts at once matches two signatures, and nothing picks one by table order."""
    kl = _kl(4)
    state = {**kl.state_dict(), **to_ldm(kl.state_dict(), 4)}
    path = _save(tmp_path / "mixed.safetensors", state)
    matches = detect(path)
    assert sorted(m.name for m in matches) == ["autoencoder_kl/diffusers", "autoencoder_kl/ldm"]
    assert [m.name for m in detect(read_header(path))] == [m.name for m in matches]
    info = describe(path, hash=False)
    assert info.architecture is None and "2 signatures match" in info.notes[0]
    with pytest.raises(WeightsError, match=r"2 signatures match .*will not guess"):
        load_vae(path, hash=False)


# --- formats: ambiguity, user choice, metadata -----------------------------------------------------------


def test_sd1_or_sdxl_cannot_be_told_from_the_file(tmp_path):
    path = _write_diffusers(_kl(4), tmp_path)
    info = describe(path, hash=False)
    assert info.format is None
    assert "4-channel KL f8: sd1 or sdxl or playground25 — the file alone cannot tell" in " ".join(info.notes)
    assert "pass --format" in " ".join(info.notes)
    vae = load_vae(path, hash=False)
    assert vae.format is None


@pytest.mark.parametrize("name", ["sd1", "sdxl", "playground25"])
def test_user_format_wins(tmp_path, name):
    path = _write_diffusers(_kl(4), tmp_path)
    info = describe(path, format=name, hash=False)
    assert (info.format, info.format_source) == (name, "user")
    assert load_vae(path, format=name, hash=False).format is get_format(name)


def test_user_format_that_does_not_fit_is_refused(tmp_path):
    path = _write_diffusers(_kl(4), tmp_path)
    with pytest.raises(IncompatibleError, match=r"format 'sd3' \(16 raw channels.*does not fit.*4-channel KL f8"):
        describe(path, format="sd3", hash=False)
    with pytest.raises(UnknownFormatError, match="Did you mean 'sdxl'"):
        load_vae(path, format="sdxk", hash=False)


def test_sd3_or_flux1_cannot_be_told_from_the_file(tmp_path):
    info = describe(_write_ldm(_kl(16, quant=False), tmp_path), hash=False)
    assert info.formats == ("sd3", "flux1") and info.format is None
    assert "16-channel KL f8: sd3 or flux1" in " ".join(info.notes)


@pytest.mark.parametrize(
    ("metadata", "want", "source"),
    [
        ({"latentbridge.format": "sdxl"}, "sdxl", "metadata"),
        ({"modelspec.architecture": "stable-diffusion-xl-v1-base/vae"}, "sdxl", "modelspec"),
        ({"modelspec.architecture": "stable-diffusion-v1"}, "sd1", "modelspec"),
        ({"latentbridge.format": "sd1", "modelspec.architecture": "stable-diffusion-xl-v1-base"}, "sd1", "metadata"),
    ],
)
def test_metadata_names_the_format(tmp_path, metadata, want, source):
    path = _save(tmp_path / "vae.safetensors", _kl(4).state_dict(), metadata)
    info = describe(path, hash=False)
    assert (info.format, info.format_source) == (want, source)
    assert dict(info.metadata) == metadata
    if len(metadata) == 2:
        assert any("modelspec says 'sdxl' but metadata says 'sd1'" in n for n in info.notes)


def test_metadata_that_does_not_fit_is_ignored_and_said(tmp_path):
    path = _save(tmp_path / "vae.safetensors", _kl(4).state_dict(), {"latentbridge.format": "flux1"})
    info = describe(path, hash=False)
    assert info.format is None
    assert any("metadata names format 'flux1', which does not fit a 4-channel KL f8: ignored" in n for n in info.notes)


# --- checkpoints, parts, folders -------------------------------------------------------------------------


def test_checkpoint_without_vae(tmp_path):
    state = {
        "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3),
        "cond_stage_model.transformer.text_model.embeddings.position_ids": torch.zeros(1, 77),
    }
    path = _save(tmp_path / "unet_only.safetensors", state)
    info = describe(path)
    assert info.checkpoint and not info.has_vae and info.architecture is None
    assert info.notes[0].startswith("this checkpoint has no VAE: load a separate VAE file")
    with pytest.raises(WeightsError, match=r"this checkpoint has no VAE: load a separate VAE file"):
        load_vae(path)


def test_checkpoint_with_vae_says_where(tmp_path):
    info = describe(_write_ckpt(_kl(4), tmp_path), hash=False)
    assert info.checkpoint and info.has_vae and info.container == "pickle"
    assert "its VAE sits under 'first_stage_model.'" in info.notes[0]
    assert "VAE: under 'first_stage_model.'" in info.render()
    # an all-in-one FLUX.1 checkpoint: BFL transformer keys and the VAE under "vae."
    model = _kl(16, quant=False)
    state = {f"vae.{k}": v for k, v in to_ldm(model.state_dict(), 4).items()}
    state["model.diffusion_model.double_blocks.0.img_attn.qkv.weight"] = torch.zeros(6, 2)
    path = _save(tmp_path / "flux1-dev-all-in-one.safetensors", state)
    info = describe(path, hash=False)
    assert (info.prefix, info.layout, info.formats) == ("vae.", "bfl", ("sd3", "flux1"))
    vae = load_vae(path, format="flux1", hash=False)
    z = torch.randn(1, 16, 4, 4)
    with torch.no_grad():
        assert (vae.decode(z) - model.decode(z).sample).abs().max() <= PARITY


def test_decoder_only_file(tmp_path):
    model = _kl(4)
    state = {k: v for k, v in to_ldm(model.state_dict(), 4).items() if k.startswith(("decoder.", "post_quant_conv."))}
    path = _save(tmp_path / "decoder.safetensors", state)
    info = describe(path, hash=False)
    assert info.has_decoder and not info.has_encoder
    with pytest.raises(WeightsError, match=r"holds only the decoder of a AutoencoderKL.*pass part='decoder'"):
        load_vae(path, part="both", hash=False)
    available = load_vae(path, hash=False)  # the default loads the half the file holds
    assert available.decode is not None and available.encode is None
    vae = load_vae(path, part="decoder", hash=False)
    assert vae.encode is None and vae.module.encoder is None
    z = torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        assert (vae.decode(z) - model.decode(z).sample).abs().max() <= PARITY
    with pytest.raises(
        WeightsError, match=r"needs the encoder: pass the file that holds the encoder.*--vae ENCODER,DECODER"
    ):
        load_vae(path, part="encoder", hash=False)


def test_part_decoder_skips_the_encoder(tmp_path):
    vae = load_vae(_write_diffusers(_kl(4), tmp_path), part="decoder", hash=False)
    assert vae.encode is None and vae.decode is not None
    assert vae.module.encoder is None and vae.module.quant_conv is None


def test_diffusers_folder_and_pipeline_folder(tmp_path):
    model = _kl(4)
    model.save_pretrained(tmp_path / "pipe" / "vae")
    (tmp_path / "pipe" / "model_index.json").write_text("{}")
    for folder in (tmp_path / "pipe" / "vae", tmp_path / "pipe"):
        info = describe(folder, hash=False)
        assert info.architecture == "autoencoder_kl" and info.file.endswith("diffusion_pytorch_model.safetensors")
        vae = load_vae(folder, hash=False)
        z = torch.randn(1, 4, 4, 4)
        with torch.no_grad():
            assert (vae.decode(z) - model.decode(z).sample).abs().max() <= PARITY


def test_folder_config_must_name_the_right_class(tmp_path):
    _kl(4).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["_class_name"] = "AutoencoderKLWan"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match=r"config.json names AutoencoderKLWan but the weights are AutoencoderKL"):
        load_vae(tmp_path, hash=False)


def test_not_a_diffusers_folder(tmp_path):
    with pytest.raises(FileFormatError, match=r"is not a diffusers VAE folder: expected config.json"):
        describe(tmp_path)


def test_dtype_and_names(tmp_path):
    path = _write_diffusers(_kl(4), tmp_path)
    vae = load_vae(path, dtype="bf16", hash=False)
    assert next(vae.module.parameters()).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype 'fp8': expected one of"):
        load_vae(path, dtype="fp8")
    with pytest.raises(ValueError, match="part must be one of"):
        load_vae(path, part="middle", hash=False)


# --- strict loading --------------------------------------------------------------------------------------


def test_missing_keys_are_listed_sorted(tmp_path):
    state = _kl(4).state_dict()
    for key in ("decoder.conv_out.bias", "decoder.conv_in.bias", "decoder.mid_block.resnets.0.norm1.weight"):
        del state[key]
    path = _save(tmp_path / "vae.safetensors", state)
    with pytest.raises(
        WeightsError,
        match=r"3 missing keys \[decoder\.conv_in\.bias, decoder\.conv_out\.bias, "
        r"decoder\.mid_block\.resnets\.0\.norm1\.weight\]",
    ) as err:
        load_vae(path, hash=False)
    assert err.value.missing == sorted(err.value.missing) and err.value.unexpected == []


def test_unexpected_keys_are_listed_sorted(tmp_path):
    state = _kl(4).state_dict()
    state["encoder.extra.weight"] = torch.zeros(2)
    state["decoder.extra.weight"] = torch.zeros(2)
    path = _save(tmp_path / "vae.safetensors", state)
    with pytest.raises(WeightsError, match=r"2 unexpected keys \[decoder\.extra\.weight, encoder\.extra\.weight\]"):
        load_vae(path, hash=False)


def test_training_only_tensors_are_dropped(tmp_path):
    """Original LDM checkpoints may carry their loss (discriminator, LPIPS) and EMA counters: declared and dropped."""
    model = _kl(4)
    state = to_ldm(model.state_dict(), 4)
    state["loss.discriminator.main.0.weight"] = torch.zeros(8, 3, 4, 4)
    state["loss.logvar"] = torch.zeros(())
    state["model_ema.num_updates"] = torch.zeros((), dtype=torch.int64)
    path = _save(tmp_path / "kl-f8.safetensors", state)
    info = describe(path, hash=False)
    assert info.parameters == sum(v.numel() for v in model.state_dict().values())
    assert any("3 tensors under the VAE's keys belong to no part of it (loss.discriminator" in n for n in info.notes)
    vae = load_vae(path, hash=False)
    z = torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        assert (vae.decode(z) - model.decode(z).sample).abs().max() <= PARITY


def test_keys_of_no_part_are_unexpected(tmp_path):
    state = {**_kl(4).state_dict(), "text_projection.weight": torch.zeros(2)}
    path = _save(tmp_path / "vae.safetensors", state)
    with pytest.raises(WeightsError, match=r"1 unexpected keys \[text_projection\.weight\].*belong to no part"):
        load_vae(path, hash=False)


def test_wrong_shapes_are_listed(tmp_path):
    state = _kl(4).state_dict()
    state["decoder.mid_block.resnets.0.conv1.bias"] = torch.zeros(7)
    path = _save(tmp_path / "vae.safetensors", state)
    with pytest.raises(
        WeightsError,
        match=r"1 tensors have the wrong shape "
        r"\[decoder\.mid_block\.resnets\.0\.conv1\.bias: file \(7,\) vs module \(64,\)\]",
    ):
        load_vae(path, hash=False)


# --- unknown, corrupt and unsafe files -------------------------------------------------------------------


def test_unknown_architecture(tmp_path):
    path = _save(
        tmp_path / "lora.safetensors",
        {"lora_unet_down.alpha": torch.ones(1), "lora_unet_down.weight": torch.ones(4, 4)},
    )
    info = describe(path)
    assert info.architecture is None and not info.checkpoint
    assert info.notes[0].startswith("no known VAE architecture matches its 2 tensors (first keys: lora_unet_down.alpha")
    with pytest.raises(WeightsError, match=r"cannot load .*no known VAE architecture matches"):
        load_vae(path)


def test_truncated_safetensors(tmp_path):
    good = _write_diffusers(_kl(4), tmp_path)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(good.read_bytes()[:-1000])
    with pytest.raises(FileFormatError, match=r"truncated safetensors file: the tensors need \d+ bytes .*re-download"):
        describe(bad)


def test_garbage_and_empty_files(tmp_path):
    junk = tmp_path / "vae.safetensors"
    junk.write_bytes(b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04")  # a real GIF header
    with pytest.raises(FileFormatError, match=r"its first bytes .* are not safetensors, a PyTorch pickle or ONNX"):
        describe(junk)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(FileFormatError, match=r"the file is empty \(0 bytes\)"):
        load_vae(empty)
    with pytest.raises(FileFormatError, match="no such file or folder"):
        describe(tmp_path / "missing.safetensors")


def test_truncated_pickle(tmp_path):
    path = tmp_path / "vae.pt"
    torch.save(_kl(4).state_dict(), path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(FileFormatError, match=r"a damaged or truncated zip archive .*re-download"):
        describe(path)


class Payload:
    """Stands for any pickled object: weights_only=True must refuse it, never run it."""


def test_pickle_with_objects_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "callbacks": Payload()}, path)  # a full Lightning checkpoint
    with pytest.raises(
        FileFormatError,
        match=r"refuses to unpickle it: it references [\w.]*Payload, which unpickling would import and call "
        r"\(weights_only=True; nothing from the file was executed\); use the \.safetensors or pruned release",
    ) as err:
        describe(path)
    assert "\x1b" not in str(err.value)  # torch's own message carries terminal escape codes


def test_pickle_with_non_tensor_values(tmp_path):
    path = tmp_path / "vae.pt"
    torch.save({"decoder.conv_in.weight": torch.zeros(1), "step": 3}, path)
    with pytest.raises(FileFormatError, match=r"non-tensor values under \['step'\]"):
        describe(path)


# --- hashes ----------------------------------------------------------------------------------------------


def test_sha256_matches_hashlib(tmp_path):
    path = _write_diffusers(_kl(4), tmp_path)
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert describe(path).sha256 == sha256_file(path)  # small files are hashed automatically


def test_big_files_are_hashed_only_when_asked(tmp_path, monkeypatch):
    path = _write_diffusers(_kl(4), tmp_path)
    monkeypatch.setattr(info_mod, "AUTO_HASH_LIMIT", 1000)  # pretend the file is a multi-GB checkpoint
    info = describe(path)
    assert info.sha256 == "" and any("sha256 not computed" in n and "pass hash=True" in n for n in info.notes)
    assert describe(path, hash=True).sha256 == sha256_file(path)


def test_known_hash_table():
    assert len({k.sha256 for k in KNOWN_FILES}) == len(KNOWN_FILES)
    for k in KNOWN_FILES:
        assert re.fullmatch(r"[0-9a-f]{64}", k.sha256) and k.format in formats() and k.source
    assert known_file("735E4C3A447A3255760D7F86845F09F937809BAA529C17370D83E4C3758F3C75").format == "sd1"
    assert known_file("0" * 64) is None


def test_readme_hashes_are_in_the_table(shared_weights):
    lines = (shared_weights / "README.md").read_text().splitlines()
    listed = [line.split() for line in lines if re.fullmatch(r"[0-9a-f]{64}\s+\S+", line.strip())]
    assert len(listed) == 7
    for sha, rel in listed:
        assert sha256_file(shared_weights / rel) == sha
        assert known_file(sha) is not None
        assert describe(shared_weights / rel).format == known_file(sha).format


# --- zoo and hub -----------------------------------------------------------------------------------------


def test_zoo_name():
    from latentbridge import zoo

    if zoo.zoo_path("zoo-a").is_file():
        vae = load_vae("zoo-a")
        assert vae.format is get_format("zoo-a") and vae.name == "zoo-a"
    else:
        with pytest.raises(WeightsError, match="zoo VAE 'zoo-a' is not built in this installation"):
            load_vae("zoo-a")


def test_hub_without_huggingface_hub(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if it were not installed
    with pytest.raises(
        WeightsError, match=r"needs huggingface_hub, which is not installed: pip install 'latentbridge\[hub\]'"
    ):
        load_vae("hub:madebyollin/taesd")


def test_hub_without_network(monkeypatch, tmp_path):
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)  # no network, whatever the machine has
    monkeypatch.setattr(hub.constants, "HF_HUB_CACHE", str(tmp_path))  # and nothing cached
    with pytest.raises(WeightsError, match="could not download madebyollin/taesd from the Hugging Face hub"):
        load_vae("hub:madebyollin/taesd")
    with pytest.raises(WeightsError, match=r"could not download madebyollin/taesd/taesd_decoder.pth"):
        load_vae("taesd_decoder.pth", from_hub="madebyollin/taesd")


# --- key maps --------------------------------------------------------------------------------------------


def test_ldm_map_reverses_decoder_levels():
    keymap = ldm_to_diffusers(4)
    assert (
        rename("decoder.up.0.block.2.nin_shortcut.weight", keymap)
        == "decoder.up_blocks.3.resnets.2.conv_shortcut.weight"
    )
    assert rename("decoder.up.3.upsample.conv.bias", keymap) == "decoder.up_blocks.0.upsamplers.0.conv.bias"
    assert rename("encoder.mid.attn_1.proj_out.weight", keymap) == "encoder.mid_block.attentions.0.to_out.0.weight"
    assert rename("something.else", keymap) == "something.else"  # unmatched keys surface as unexpected


def test_key_map_errors():
    with pytest.raises(ValueError, match="matches several templates"):
        rename("a.b", {"a.{}": "x.{}", "{}.b": "y.{}"})
    with pytest.raises(ValueError, match=r"'\{\.\.\.\}' may appear once, at the end"):
        rename("a.b", {"{...}.b": "x"})
    with pytest.raises(ValueError, match=r"both map to 'x.w'"):
        remap({"a.w": torch.zeros(1), "b.w": torch.zeros(1)}, {"a.{}": "x.{}", "b.{}": "x.{}"})


def test_wan22_map_nests_levels():
    keymap = wan22_to_diffusers(2)
    assert (
        rename("encoder.downsamples.1.downsamples.0.shortcut.weight", keymap)
        == "encoder.down_blocks.1.resnets.0.conv_shortcut.weight"
    )
    assert (
        rename("encoder.downsamples.2.downsamples.2.time_conv.bias", keymap)
        == "encoder.down_blocks.2.downsampler.time_conv.bias"
    )
    assert (
        rename("decoder.upsamples.0.upsamples.2.residual.3.gamma", keymap)
        == "decoder.up_blocks.0.resnets.2.norm2.gamma"
    )
    assert (
        rename("decoder.upsamples.1.upsamples.3.resample.1.weight", keymap)
        == "decoder.up_blocks.1.upsampler.resample.1.weight"
    )
    assert rename("conv1.weight", keymap) == "quant_conv.weight"
    assert rename("encoder.conv1.weight", keymap) == "encoder.conv_in.weight"


def test_fused_qkv_split():
    qkv = torch.arange(12.0).reshape(6, 2, 1, 1)
    out = split_fused({"x.attn.to_qkv.weight": qkv, "x.attn.to_out.weight": torch.zeros(2, 2)}, DCAE_FUSED)
    assert sorted(out) == ["x.attn.to_k.weight", "x.attn.to_out.weight", "x.attn.to_q.weight", "x.attn.to_v.weight"]
    assert torch.equal(out["x.attn.to_k.weight"], qkv[2:4])
    assert split_fused_shapes({"x.attn.to_qkv.weight": (6, 2, 1, 1)}, DCAE_FUSED)["x.attn.to_v.weight"] == (2, 2, 1, 1)
    with pytest.raises(WeightsError, match=r"x\.attn\.to_qkv\.weight has shape \(7, 2\).*3 equal parts"):
        split_fused({"x.attn.to_qkv.weight": torch.zeros(7, 2)}, DCAE_FUSED)
    with pytest.raises(ValueError, match=r"splits onto 'x\.attn\.to_q\.weight', which the file also holds"):
        split_fused({"x.attn.to_q.weight": torch.zeros(2, 2), "x.attn.to_qkv.weight": torch.zeros(6, 2)}, DCAE_FUSED)


# --- original layouts of Wan 2.2 and DC-AE: the CLI and strictness -----------------------------------------

runner = CliRunner()


@pytest.mark.parametrize(
    ("build", "write", "lines"),
    [
        (
            _wan22,
            _write_wan22_original,
            (
                "architecture  Wan 2.2 causal 3-D VAE with 2×2 patchify (AutoencoderKLWan, is_residual), original keys",
                "signature     autoencoder_kl_wan+residual/wan",
                "latent        48 channels, 16× spatial, 3-D (raw)",
                "format        wan22 (from geometry)",
            ),
        ),
        (
            lambda: _dc("in"),
            _write_dc_original,
            (
                "signature     autoencoder_dc/efficientvit",
                "latent        32 channels, 32× spatial, 2-D (raw)",
                "format        sana (from geometry)",
            ),
        ),
    ],
    ids=["wan22-original", "dc-original"],
)
def test_inspect_names_original_layouts(tmp_path, build, write, lines):
    path = write(build(), tmp_path)
    result = runner.invoke(app, ["inspect", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output.splitlines()
    assert [line for line in lines if not any(o.startswith(line) for o in out)] == []
    data = json.loads(runner.invoke(app, ["inspect", str(path), "--json"]).stdout)
    assert data["kind"] == "weights" and data["layout"] in ("wan", "efficientvit") and data["parameters"] > 0


def test_original_dc_file_missing_a_tensor_is_refused(tmp_path):
    dc = _dc("shuffle")
    state = to_dc_original(dc.state_dict(), conv_down=False)
    del state["decoder.project_out.op_list.0.bias"]
    del state["encoder.stages.3.op_list.0.context_module.main.proj.norm.weight"]
    path = _save(tmp_path / "model.safetensors", state)
    with pytest.raises(
        WeightsError,
        match=r"2 missing keys \[decoder\.norm_out\.bias, encoder\.down_blocks\.3\.0\.attn\.norm_out\.weight\]",
    ):
        load_vae(path, hash=False)


def test_original_wan22_file_with_a_foreign_tensor_is_refused(tmp_path):
    state = to_wan22_original(_wan22().state_dict(), 2)
    state["decoder.upsamples.0.upsamples.9.extra.weight"] = torch.zeros(2)
    path = _save(tmp_path / "wan2.2_vae.safetensors", state)
    with pytest.raises(WeightsError, match=r"1 unexpected keys \[decoder\.upsamples\.0\.upsamples\.9\.extra\.weight\]"):
        load_vae(path, hash=False)


@pytest.mark.parametrize("name", ["wan21-diffusers", "wan21-original", "wan22-diffusers", "wan22-original"])
def test_decoder_only_wan_files(tmp_path, name):
    """A Wan decoder alone: its config (widths, depth, temporal up-sampling, patchify) comes from decoder shapes."""
    build, write, sig, channels, ratio, _ = CASES[name]
    model = build()
    full = read_header(write(model, tmp_path))
    state = load_file(str(full.path))
    state = {k: v for k, v in state.items() if k.startswith(("decoder.", "post_quant_conv.", "conv2."))}
    path = _save(tmp_path / "decoder.safetensors", state)
    info = describe(path, hash=False)
    assert info.matches == (sig,) and info.has_decoder and not info.has_encoder
    assert (info.latent_channels, info.spatial_ratio) == (channels, ratio)
    vae = load_vae(path, part="decoder", hash=False)
    z = _latents(model, channels, ratio)
    with torch.no_grad():
        assert (vae.decode(z) - model.decode(z).sample).abs().max() <= PARITY


# --- real-world files (found in a review with files written the way real tools write them) --------------------


def _decodes_like(vae, model, channels: int = 4) -> bool:
    z = torch.randn(1, channels, 4, 4)
    with torch.no_grad():
        return bool((vae.decode(z) - model.decode(z).sample).abs().max() <= PARITY)


def _rounded(model, dtype: torch.dtype):
    """``model`` with its weights rounded through ``dtype``: what loading a file saved in that dtype must give."""
    model.load_state_dict({k: v.to(dtype).float() for k, v in model.state_dict().items()})
    return model


@pytest.mark.parametrize(
    ("variant", "safe", "index"),
    [
        (None, True, "diffusion_pytorch_model.safetensors.index.json"),
        ("fp16", True, "diffusion_pytorch_model.safetensors.index.fp16.json"),  # diffusers' _add_variant naming
        (None, False, "diffusion_pytorch_model.bin.index.json"),
    ],
    ids=["safetensors", "fp16-variant", "bin"],
)
def test_sharded_diffusers_folder_loads_like_one_file(tmp_path, variant, safe, index):
    model = _kl(4)
    if variant == "fp16":
        _rounded(model, torch.float16)
    saved = _kl(4).half() if variant == "fp16" else model
    if variant == "fp16":
        saved.load_state_dict(model.state_dict())
    saved.save_pretrained(tmp_path, max_shard_size="300KB", variant=variant, safe_serialization=safe)
    assert (tmp_path / index).is_file() and len(list(tmp_path.glob("diffusion_pytorch_model*-of-*"))) > 3
    info = describe(tmp_path)
    assert info.file.endswith(index) and info.architecture == "autoencoder_kl" and info.sha256 == ""
    assert info.notes[0].startswith("sha256 not computed: the weights are sharded over")
    assert (info.format, info.format_source) == ("sd1", "config.json")  # the config says 0.18215
    assert info.dtype == ("float16" if variant else "float32")
    assert _decodes_like(load_vae(tmp_path), model)


def test_sharded_folder_with_missing_or_foreign_shards_is_refused(tmp_path):
    _kl(4).save_pretrained(tmp_path, max_shard_size="300KB")
    index = tmp_path / "diffusion_pytorch_model.safetensors.index.json"
    data = json.loads(index.read_text())
    shard = sorted(set(data["weight_map"].values()))[1]
    moved = tmp_path / shard
    moved.rename(tmp_path / "elsewhere.bin")
    with pytest.raises(
        FileFormatError, match=rf"1 of its \d+ shards are missing \({shard}\); the download is incomplete"
    ):
        describe(tmp_path)
    (tmp_path / "elsewhere.bin").rename(moved)
    key = next(k for k, v in data["weight_map"].items() if v == shard)
    other = dict(data, weight_map={**data["weight_map"], key: sorted(set(data["weight_map"].values()))[0]})
    index.write_text(json.dumps(other))
    with pytest.raises(FileFormatError, match=r"1 tensors are not in the shard its weight_map names .*re-download"):
        describe(tmp_path)
    index.write_text(json.dumps(dict(data, weight_map={**data["weight_map"], key: "../outside.safetensors"})))
    with pytest.raises(FileFormatError, match=r"its weight_map names files outside the folder"):
        describe(tmp_path)


@pytest.mark.parametrize(
    ("channels", "config", "want"),
    [
        (4, {"scaling_factor": 0.13025}, "sdxl"),  # stabilityai/sdxl-vae, madebyollin/sdxl-vae-fp16-fix
        (4, {"scaling_factor": 0.18215}, "sd1"),
        (4, {"scaling_factor": 0.5}, "playground25"),
        (16, {"scaling_factor": 1.5305, "shift_factor": 0.0609}, "sd3"),
        (16, {"scaling_factor": 0.3611, "shift_factor": 0.1159}, "flux1"),
        (4, {}, None),  # older SD1 configs state no scaling_factor: diffusers' default is not evidence
        (16, {"scaling_factor": 1.5305}, None),  # SD3's scale without its shift: no format has that
    ],
)
def test_diffusers_config_names_the_format(tmp_path, channels, config, want):
    _kl(channels, quant=channels == 4).save_pretrained(tmp_path / "pipe" / "vae")
    (tmp_path / "pipe" / "model_index.json").write_text("{}")
    path = tmp_path / "pipe" / "vae" / "config.json"
    stored = {k: v for k, v in json.loads(path.read_text()).items() if k not in ("scaling_factor", "shift_factor")}
    path.write_text(json.dumps({**stored, **config}))
    info = describe(tmp_path / "pipe", hash=False)
    assert (info.format, info.format_source) == (want, "config.json" if want else "")
    assert describe(tmp_path / "pipe", format="sd1" if channels == 4 else "sd3", hash=False).format_source == "user"


def test_comfyui_sd3_checkpoint_modelspec_names_sd3(tmp_path):
    """ComfyUI's CheckpointSave writes modelspec.architecture "stable-diffusion-v3-medium" for SD3 models."""
    model = _kl(16, quant=False)
    state = {f"first_stage_model.{k}": v for k, v in to_ldm(model.state_dict(), 4).items()}
    state["model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight"] = torch.zeros(6, 2)
    path = _save(
        tmp_path / "ComfyUI_00001_.safetensors", state, {"modelspec.architecture": "stable-diffusion-v3-medium"}
    )
    info = describe(path, hash=False)
    assert (info.format, info.format_source, info.prefix) == ("sd3", "modelspec", "first_stage_model.")
    assert load_vae(path, hash=False).format is get_format("sd3")


def test_incomplete_and_foreign_folders_say_what_is_missing(tmp_path):
    _kl(4).save_pretrained(tmp_path / "vae")
    (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(
        FileFormatError, match=r"has a config.json but no weights: .* it holds config.json\. .*incomplete"
    ):
        load_vae(tmp_path / "vae")
    (tmp_path / "pipe").mkdir()
    (tmp_path / "pipe" / "model_index.json").write_text("{}")
    with pytest.raises(FileFormatError, match=r"\(a diffusers pipeline folder without a vae/ subfolder\)"):
        describe(tmp_path / "pipe")
    cache = tmp_path / "models--stabilityai--sdxl-vae"
    for sub in ("blobs", "refs", "snapshots"):
        (cache / sub).mkdir(parents=True)
    with pytest.raises(FileFormatError, match=r"\(a Hugging Face cache folder: pass its snapshots/<revision> folder\)"):
        describe(cache)


def test_git_lfs_pointer_in_a_diffusers_folder(tmp_path):
    _kl(4).save_pretrained(tmp_path)
    (tmp_path / "diffusion_pytorch_model.safetensors").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:31e35c80fc4829d1\nsize 334643268\n"
    )
    with pytest.raises(FileFormatError, match=r"this is a git-lfs pointer file .*run `git lfs pull`"):
        load_vae(tmp_path)


def test_checkpoint_renamed_to_safetensors_loads_by_content(tmp_path):
    """Renaming model.ckpt to model.safetensors converts nothing; torch.load alone would treat the name as truth."""
    model = _kl(4)
    path = tmp_path / "model.safetensors"
    torch.save({"state_dict": to_ldm(model.state_dict(), 4), "global_step": 3}, path)
    info = describe(path, hash=False)
    assert (info.container, info.layout) == ("pickle", "ldm")
    assert _decodes_like(load_vae(path, hash=False), model)


def test_truncated_safetensors_whose_length_looks_like_a_pickle(tmp_path):
    path = _save(tmp_path / "vae.bin", {"decoder.conv_in.weight": torch.zeros(4, 4, 3, 3)}, {"p": "x" * 800})
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    head = data[8 : 8 + size].rstrip(b" ")
    path.write_bytes(((0x380).to_bytes(8, "little") + head + b" " * (0x380 - len(head)))[:300])  # 80 03 …, cut short
    with pytest.raises(
        FileFormatError, match=r"truncated safetensors header: it declares 896 bytes but the file holds only 292"
    ):
        describe(path)


def test_ldm_vae_ckpt_with_training_state_loads(tmp_path):
    """vae-ft-mse-840000-ema-pruned.ckpt style: a state_dict wrapper with the loss (discriminator, LPIPS, logvar)
    and the EMA counters beside the VAE; A1111 drops loss* and model_ema.decay/num_updates, and so does load_vae."""
    model = _kl(4)
    state = to_ldm(model.state_dict(), 4)
    state["loss.logvar"] = torch.zeros(())
    state["loss.discriminator.main.0.weight"] = torch.zeros(8, 3, 4, 4)
    state["loss.perceptual_loss.net.slice1.0.weight"] = torch.zeros(8, 3, 3, 3)
    state["model_ema.decay"] = torch.tensor(0.9999)
    state["model_ema.num_updates"] = torch.tensor(0, dtype=torch.int32)
    path = tmp_path / "vae-ft-mse-840000-ema-pruned.ckpt"
    torch.save({"global_step": 840001, "state_dict": state}, path)
    info = describe(path, hash=False)
    assert info.parameters == sum(v.numel() for v in model.state_dict().values())
    assert any(n.startswith("5 tensors under the VAE's keys belong to no part of it (loss.logvar") for n in info.notes)
    assert _decodes_like(load_vae(path, hash=False), model)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_checkpoint_with_a_half_precision_vae(tmp_path, dtype):
    model = _rounded(_kl(4), dtype)
    state = {f"first_stage_model.{k}": v.to(dtype) for k, v in to_ldm(model.state_dict(), 4).items()}
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(8, 4, 3, 3, dtype=dtype)
    state["model_ema.decay"] = torch.tensor(0.9999)  # a full SD1 checkpoint's EMA bookkeeping, outside the VAE
    path = _save(tmp_path / "sd15-pruned.safetensors", state)
    info = describe(path, hash=False)
    assert info.dtype == str(dtype).removeprefix("torch.") and info.checkpoint
    vae = load_vae(path, hash=False)
    assert next(vae.module.parameters()).dtype == torch.float32 and _decodes_like(vae, model)


def test_diffusers_config_with_unknown_keys_loads(tmp_path):
    """Configs written by newer or older diffusers carry keys this version's AutoencoderKL does not take."""
    model = _kl(4)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.update({"_name_or_path": "stabilityai/sd-vae-ft-mse", "a_future_option": [1, 2], "force_upcast": True})
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert _decodes_like(load_vae(tmp_path, hash=False), model)


@pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")  # writing one (torch 2.13 deprecates it)
def test_torchscript_and_npz_given_as_weights(tmp_path):
    script = tmp_path / "vae.pt"
    torch.jit.save(torch.jit.script(torch.nn.Conv2d(4, 3, 1)), str(script))
    with pytest.raises(FileFormatError, match=r"TorchScript archive .*save its state_dict\(\) with safetensors"):
        load_vae(script)
    npz = tmp_path / "latents.npz"
    with npz.open("wb") as f:
        np.savez(f, latents=np.zeros((4, 8, 8), np.float32))
    with pytest.raises(FileFormatError, match=r"it is a NumPy \.npz archive, not network weights"):
        describe(npz)


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_legacy_pickle_checkpoints(tmp_path, protocol):
    """Pre-1.6 torch.save files (not zip archives): protocols 2 and 3 load without a torch warning leaking;
    protocol 4 (which torch's safe loader cannot read) is refused with the reason, not called unsafe."""
    model = _kl(4)
    path = tmp_path / "old.ckpt"
    state = {"state_dict": to_ldm(model.state_dict(), 4), "global_step": 1}
    torch.save(state, path, pickle_protocol=protocol, _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:2] == bytes([0x80, protocol])
    if protocol == 4:
        with pytest.raises(
            FileFormatError, match=r"saved with pickle protocol 4 or 5 .* re-save it with torch\.save's"
        ):
            load_vae(path, hash=False)
        return
    assert _decodes_like(load_vae(path, hash=False), model)
