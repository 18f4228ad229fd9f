"""generate._latents: empty latents of every registered format, and seeded noise that is the same everywhere."""

from __future__ import annotations

import pytest
import torch

from latentbridge.errors import ShapeError
from latentbridge.formats import formats, get_format
from latentbridge.generate import draw_noise, empty_latent, item_seeds, noise

FORMATS = list(formats().values())
IDS = [f.name for f in FORMATS]


@pytest.mark.parametrize("fmt", FORMATS, ids=IDS)
def test_empty_latent_shape_for_every_format(fmt):
    side = 2 * fmt.size_multiple * 4  # a size every format takes (all size multiples divide it)
    frames = None if fmt.dims == 2 else fmt.temporal_ratio * 2 + (1 if fmt.causal_first_frame else 0)
    lat = empty_latent(fmt, side * 2, side, frames=frames, batch=3)
    r = fmt.model_spatial_ratio
    expect = (3, fmt.model_channels, side // r, 2 * side // r)
    if fmt.dims == 3:
        expect = (3, fmt.model_channels, 3 if fmt.causal_first_frame else 2, side // r, 2 * side // r)
    assert lat.shape == expect
    assert lat.space == "model" and lat.format is fmt and lat.layout == fmt.layout
    assert not lat.tensor.any()
    assert lat.provenance.history[0].startswith(f"empty_latent {fmt.name} {side * 2}x{side}")
    assert dict(lat.provenance.extra) == {"stage": "empty_latent"}


def test_flux2_empty_latent_is_packed_128_channels_at_16x():
    lat = empty_latent("flux2", 512, 256)
    assert lat.shape == (1, 128, 16, 32)  # 32 raw channels 2x2-packed; 16 px per model-space cell


def test_sizes_off_the_family_multiple_name_the_nearest_valid_ones():
    # SD3 and FLUX.1 take 16-px multiples although their VAE is 8x (the transformer's 2x2 patches).
    with pytest.raises(
        ShapeError, match=r"sd3 takes image sizes that are multiples of 16 px.*width 1000 is not: use 992 or 1008"
    ):
        empty_latent("sd3", 1000, 1024)
    with pytest.raises(ShapeError, match=r"height 100 is not: use 96 or 104"):
        empty_latent("sd1", 512, 100)


def test_video_frame_rule_4n_plus_1():
    lat = empty_latent("wan21", 832, 480, frames=81)
    assert lat.shape == (1, 16, 21, 60, 104)  # (81 - 1) / 4 + 1 latent frames
    with pytest.raises(ShapeError, match=r"wan21 takes 4n\+1 frames, got 80; use 77 or 81 frames"):
        empty_latent("wan21", 832, 480, frames=80)
    with pytest.raises(ShapeError, match="image format: it takes no frame count"):
        empty_latent("sdxl", 1024, 1024, frames=5)


def test_noise_golden_values_for_seed_42():
    # torch's CPU generator is mt19937; these are the values torch.manual_seed(42); torch.randn(...) has printed in
    # PyTorch's docs and tutorials for years (1.9269, 1.4873, 0.9007, -2.1055 ...), computed once here for a
    # [2, 4, 8, 8] draw (512 values: the vectorised sampler) and pinned exactly: a change would alter every seeded
    # image made with torch, so equality, not a tolerance.
    lat = noise(empty_latent("sd1", 64, 64, batch=2), 42)
    flat = lat.tensor.flatten()
    assert flat[:4].tolist() == [1.9269152879714966, 1.4872840642929077, 0.9007171988487244, -2.1055209636688232]
    assert flat[256:258].tolist() == [-0.685481607913971, 0.5635589957237244]
    assert flat[-2:].tolist() == [-0.33889833092689514, 0.5179733633995056]
    assert lat.provenance.seed == 42 and lat.space == "model" and lat.format is get_format("sd1")
    assert dict(lat.provenance.extra) == {"stage": "noise", "seeds": "42"}


def test_noise_matches_comfyui_prepare_noise_convention():
    # ComfyUI: generator = torch.manual_seed(seed); torch.randn(latent.size(), generator=generator) on the CPU.
    with torch.random.fork_rng():
        comfy = torch.randn((2, 16, 8, 8), generator=torch.manual_seed(7), device="cpu")
    assert torch.equal(noise(empty_latent("sd3", 64, 64, batch=2), 7).tensor, comfy)


def test_per_item_seeds_match_a_generator_per_item():
    # diffusers: generator=[torch.Generator("cpu").manual_seed(s) for s in seeds] draws item i alone from its own one.
    seeds = item_seeds(100, 3)
    assert seeds == (100, 101, 102)
    batch = noise(empty_latent("zoo-c", 64, 64, batch=3), seeds).tensor
    for i, s in enumerate(seeds):
        alone = torch.randn((1, 16, 8, 8), generator=torch.Generator("cpu").manual_seed(s))
        assert torch.equal(batch[i : i + 1], alone)
    assert not torch.equal(batch[0], batch[1])


def test_noise_does_not_depend_on_the_device_or_global_rng():
    torch.manual_seed(0)
    a = noise((1, 4, 8, 8), 5, format="sd1", device="meta")  # drawn on the CPU, then moved
    assert a.tensor.device.type == "meta"
    torch.manual_seed(1)  # the global generator is not used
    b = noise((1, 4, 8, 8), 5, format="sd1")
    c = noise((1, 4, 8, 8), 5, format="sd1")
    assert torch.equal(b.tensor, c.tensor)


def test_noise_dtype_is_drawn_not_cast():
    # torch's CPU sampler gives other float16 values than float32 cast down when the element count is not a multiple
    # of 16 (here 4 * 5 * 5 = 100, a 40-px SD1 image): the dtype is part of the convention (diffusers draws in the
    # pipeline's dtype, ComfyUI in the latent's, float32 by default).
    half = draw_noise((1, 4, 5, 5), 3, dtype=torch.float16)
    assert half.dtype == torch.float16
    assert not torch.equal(half, draw_noise((1, 4, 5, 5), 3).half())


def test_noise_refusals():
    with pytest.raises(ShapeError, match="2 per-item seeds for a batch of 3"):
        noise((3, 4, 8, 8), [1, 2])
    with pytest.raises(ShapeError, match="noise is drawn in model space, but this latent is raw"):
        noise(empty_latent("sd1", 64, 64).replace(space="raw"), 1)
    with pytest.raises(ValueError, match=r"a seed is an integer in \[0, 2\*\*64\)"):
        noise((1, 4, 8, 8), -1)
    with pytest.raises(TypeError, match="a seed is an int, got bool"):
        noise((1, 4, 8, 8), True)
    with pytest.raises(ShapeError, match="a flux1 latent has 4 dimensions"):
        noise((1, 16, 2, 8, 8), 1, format="flux1")
