"""latentbridge's format registry against ComfyUI 0.8.0's comfy/latent_formats.py: every number the two share
(scale, shift, per-channel statistics, latent->RGB preview factors), the channel count of ComfyUI's LATENT, and
ComfyUI's ``process_in`` (LATENT -> what the diffusion model sees) against ``raw_to_model``."""

from __future__ import annotations

import pytest
import torch

from latentbridge.formats import get_format, raw_to_model

# registry format -> ComfyUI latent format class (comfy/latent_formats.py)
COMFY_CLASSES = {
    "sd1": "SD15",
    "sdxl": "SDXL",
    "playground25": "SDXL_Playground_2_5",
    "sd_x4_upscaler": "SD_X4",
    "cascade_b": "SC_B",
    "sd3": "SD3",
    "flux1": "Flux",
    "flux2": "Flux2",
    "wan21": "Wan21",
    "wan22": "Wan22",
    "hunyuan_video": "HunyuanVideo",
    "hunyuan_image21": "HunyuanImage21",
    "hunyuan_video15": "HunyuanVideo15",
    "ltxv": "LTXV",
    "mochi": "Mochi",
    "cosmos": "Cosmos1CV8x8x8",
}
# registry numbers are ComfyUI's decimal literals, so they agree to float64 rounding; ComfyUI's per-channel
# statistics are float32 tensors, which round the literals to about 1e-7 relative
EXACT = 1e-12
FLOAT32 = 1e-6


def _comfy_format(name: str):
    import comfy.latent_formats

    return getattr(comfy.latent_formats, COMFY_CLASSES[name])()


@pytest.mark.parametrize("name", list(COMFY_CLASSES))
def test_registry_numbers_are_comfyuis(comfy, name):
    fmt, theirs = get_format(name), _comfy_format(name)
    assert fmt.scale == pytest.approx(float(theirs.scale_factor), rel=EXACT)
    assert fmt.shift == pytest.approx(float(getattr(theirs, "shift_factor", 0.0) or 0.0), abs=EXACT)
    mean = getattr(theirs, "latents_mean", None)
    if fmt.norm_source == "registry":
        assert torch.allclose(mean.flatten().double(), torch.tensor(fmt.mean).double(), rtol=FLOAT32, atol=0)
        assert torch.allclose(theirs.latents_std.flatten().double(), torch.tensor(fmt.std).double(), rtol=FLOAT32)
    else:
        assert mean is None
    factors = getattr(theirs, "latent_rgb_factors", None)
    if factors is None:
        assert fmt.rgb_factors == ()
    else:
        assert torch.equal(torch.tensor(factors).double(), torch.tensor(fmt.rgb_factors).double())
        bias = getattr(theirs, "latent_rgb_factors_bias", None) or (0.0, 0.0, 0.0)
        assert tuple(map(float, bias)) == fmt.rgb_bias


@pytest.mark.parametrize("name", list(COMFY_CLASSES))
def test_comfyui_latent_has_the_channels_of_the_registry_comfy_space(comfy, name):
    fmt, theirs = get_format(name), _comfy_format(name)
    channels, _ratio = fmt.space_shape(fmt.comfy_space)
    assert theirs.latent_channels == channels
    assert theirs.latent_dimensions == fmt.dims


@pytest.mark.parametrize("name", [n for n in COMFY_CLASSES if get_format(n).comfy_space == "raw"])
def test_comfyui_process_in_is_raw_to_model(comfy, name):
    """What ComfyUI feeds the diffusion model from a raw LATENT is the registry's model space."""
    fmt, theirs = get_format(name), _comfy_format(name)
    torch.manual_seed(0)
    raw = torch.randn(2, fmt.channels, *((3,) if fmt.dims == 3 else ()), 4, 4) * 3 + 0.5
    # float32 arithmetic in both, different order (ComfyUI: (x - mean) * scale / std): ~1e-6 relative
    assert torch.allclose(theirs.process_in(raw), raw_to_model(raw, fmt), rtol=1e-5, atol=1e-5)
    assert torch.allclose(theirs.process_out(raw_to_model(raw, fmt)), raw, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["flux2", "ltxv"])
def test_comfyui_process_in_is_the_identity_where_the_latent_is_model_space(comfy, name):
    """FLUX.2 and LTX-Video: ComfyUI's VAE normalises itself, so its LATENT already is model space."""
    assert get_format(name).comfy_space == "model"
    x = torch.randn(1, 128, *((2,) if get_format(name).dims == 3 else ()), 4, 4)
    assert torch.equal(_comfy_format(name).process_in(x), x)
