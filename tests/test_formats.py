"""The registry: invariants, round trips over every format, packing, sizes, lookup errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from latentbridge.errors import ShapeError, UnknownFormatError
from latentbridge.formats import (
    SOURCE_KEYS,
    LatentFormat,
    NormStats,
    find_formats,
    formats,
    get_format,
    grid_options,
    latent_frames,
    latent_shape,
    model_to_raw,
    pack,
    pixel_frames,
    raw_to_model,
    token_formats,
    tokens_to_model,
    unpack,
)

FORMATS = list(formats().values())
IDS = [f.name for f in FORMATS]


def _stats(fmt: LatentFormat) -> NormStats | None:
    if fmt.norm_source != "vae":
        return None
    g = torch.Generator().manual_seed(1)
    return NormStats(
        torch.randn(fmt.model_channels, generator=g), torch.rand(fmt.model_channels, generator=g) + 0.5, "t"
    )


def _raw(fmt: LatentFormat, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    hw = (4 * fmt.patch, 6 * fmt.patch)
    shape = (2, fmt.channels, *hw) if fmt.dims == 2 else (2, fmt.channels, 3, *hw)
    return (torch.randn(shape, generator=g) * 3 + 0.5).to(dtype)


def test_registry_is_large_and_named_uniquely():
    names = [f.name for f in FORMATS]
    assert len(names) >= 16
    assert len(set(names)) == len(names)
    for required in ("sd1", "sdxl", "playground25", "sd3", "flux1", "flux2", "sana", "wan21", "wan22", "ltxv"):
        assert required in names


@pytest.mark.parametrize("fmt", FORMATS, ids=IDS)
def test_every_format_has_every_source(fmt: LatentFormat):
    for key in SOURCE_KEYS:
        assert fmt.source(key).strip(), f"{fmt.name} has no source for {key}"
    assert fmt.size_multiple % fmt.spatial_ratio == 0
    if fmt.rgb_factors:
        assert len(fmt.rgb_factors) == fmt.channels


@pytest.mark.parametrize("fmt", FORMATS, ids=IDS)
def test_raw_model_round_trip(fmt: LatentFormat):
    raw = _raw(fmt)
    if fmt.dims == 3 and fmt.patch > 1:
        pytest.skip("no packed video format exists")
    stats = _stats(fmt)
    model = raw_to_model(raw, fmt, stats)
    assert model.shape[1] == fmt.model_channels
    back = model_to_raw(model, fmt, stats)
    # float32 arithmetic on values of magnitude ~10: a few ulps
    torch.testing.assert_close(back, raw, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f.norm_source == "none"], ids=lambda f: f.name)
def test_scale_shift_formula(fmt: LatentFormat):
    raw = _raw(fmt)
    torch.testing.assert_close(raw_to_model(raw, fmt), (raw - fmt.shift) * fmt.scale)


def test_known_conventions():
    raw = torch.full((1, 4, 2, 2), 2.0)
    assert torch.allclose(raw_to_model(raw, get_format("sd1")), raw * 0.18215)
    pg = get_format("playground25")
    z = raw_to_model(raw, pg)
    expect = (2.0 - torch.tensor(pg.mean)) * 0.5 / torch.tensor(pg.std)
    torch.testing.assert_close(z[0, :, 0, 0], expect)
    wan = get_format("wan21")
    v = torch.zeros(1, 16, 1, 2, 2)
    torch.testing.assert_close(raw_to_model(v, wan)[0, :, 0, 0, 0], -torch.tensor(wan.mean) / torch.tensor(wan.std))


def test_flux2_pack_matches_reference_channel_order():
    x = torch.arange(1 * 2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    p = pack(x, 2)
    assert p.shape == (1, 8, 2, 2)
    # packed channel index = c*4 + dy*2 + dx (FLUX.2 / diffusers patchify)
    for c in range(2):
        for dy in range(2):
            for dx in range(2):
                assert torch.equal(p[0, c * 4 + dy * 2 + dx], x[0, c, dy::2, dx::2])
    assert torch.equal(unpack(p, 2), x)


def test_flux2_needs_vae_stats():
    fmt = get_format("flux2")
    with pytest.raises(ValueError, match="statistics stored in its VAE file"):
        raw_to_model(torch.zeros(1, 32, 4, 4), fmt)
    with pytest.raises(ShapeError, match="needs 128 normalisation values"):
        raw_to_model(torch.zeros(1, 32, 4, 4), fmt, NormStats(torch.zeros(32), torch.ones(32), "bad"))
    stats = NormStats.from_running(torch.ones(128), torch.full((128,), 4.0), 1e-4, "t")
    z = raw_to_model(torch.ones(1, 32, 4, 4), fmt, stats)
    assert z.shape == (1, 128, 2, 2) and z.abs().max() < 1e-6


def test_pack_errors():
    with pytest.raises(ShapeError, match="multiples of 2"):
        pack(torch.zeros(1, 32, 5, 4), 2)
    with pytest.raises(ShapeError, match="channels must be a multiple of 4"):
        unpack(torch.zeros(1, 6, 2, 2), 2)


def test_wrong_channels_error_names_spaces():
    with pytest.raises(ShapeError, match=r"raw: 16 ch, model: 16 ch"):
        raw_to_model(torch.zeros(1, 4, 8, 8), get_format("sd3"))
    with pytest.raises(ShapeError, match="add the batch dimension"):
        raw_to_model(torch.zeros(4, 8, 8), get_format("sd1"))


def test_lookup_and_did_you_mean():
    assert get_format("SDXL").name == "sdxl"
    assert get_format("hunyuan-video").name == "hunyuan_video"
    with pytest.raises(UnknownFormatError, match="Did you mean 'flux2' or 'flux1'"):
        get_format("flux3")


def test_find_formats_by_geometry():
    names = {f.name for f in find_formats(channels=4, spatial_ratio=8)}
    assert {"sd1", "sdxl", "playground25"} <= names
    assert [f.name for f in find_formats(channels=128, spatial_ratio=16, space="model")] == ["flux2"]
    sana_like = {f.name for f in find_formats(channels=32)}
    assert {"flux2", "sana"} <= sana_like


def test_sizes_and_frames():
    assert latent_shape(get_format("sd1"), 512, 768) == (1, 4, 64, 96)
    assert latent_shape(get_format("flux2"), 512, 512, space="model") == (1, 128, 32, 32)
    assert latent_shape(get_format("wan21"), 480, 832, frames=81) == (1, 16, 21, 60, 104)
    with pytest.raises(ShapeError, match="use 504 or 512"):
        latent_shape(get_format("sd1"), 510, 512)
    wan = get_format("wan21")
    assert latent_frames(wan, 1) == 1 and latent_frames(wan, 5) == 2 and pixel_frames(wan, 21) == 81
    with pytest.raises(ShapeError, match=r"4n\+1 frames, got 80; use 77 or 81"):
        latent_frames(wan, 80)
    assert get_format("mochi").frame_rule == "6n+1"


def test_invariants_are_checked():
    base = get_format("sd1")
    with pytest.raises(ValueError, match="one row per raw channel"):
        dataclasses.replace(base, rgb_factors=base.rgb_factors[:3])
    with pytest.raises(ValueError, match="sources must name"):
        dataclasses.replace(base, sources=())
    with pytest.raises(ValueError, match="needs 4 mean/std values"):
        dataclasses.replace(base, norm_source="registry", mean=(0.0,), std=(1.0,))


# --- diffusers token sequences ------------------------------------------------------------------------


def _diffusers_tokens(model: torch.Tensor, fmt: LatentFormat) -> torch.Tensor:
    """The token sequence a diffusers pipeline hands out, written out independently of latentbridge: FLUX.1's
    _pack_latents (2×2 patches, features (c, dy, dx)) or FLUX.2's (the packed latent's cells row by row)."""
    n, c, h, w = model.shape
    p = fmt.token_patch
    x = model.view(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n, (h // p) * (w // p), c * p * p)


TOKEN_FORMATS = [f for f in formats().values() if f.token_patch]


def test_token_forms_are_the_flux_pipelines():
    assert {f.name: (f.token_dim, f.token_spatial_ratio) for f in TOKEN_FORMATS} == {
        "flux1": (64, 16),
        "flux2": (128, 16),
        "wan21": (64, 16),  # Qwen-Image's one-frame Wan 2.1 latents
    }
    assert [f.name for f in token_formats(64)] == ["flux1", "wan21"] and token_formats(16) == []


@pytest.mark.parametrize("fmt", TOKEN_FORMATS, ids=lambda f: f.name)
@pytest.mark.parametrize("grid", [(3, 5), (4, 4), (1, 7)])
def test_tokens_to_model_inverts_the_pipeline_packing(fmt: LatentFormat, grid: tuple[int, int]):
    rows, cols = grid
    p = fmt.token_patch
    model = torch.randn(2, fmt.model_channels, rows * p, cols * p)
    tokens = _diffusers_tokens(model, fmt)
    assert tokens.shape == (2, rows * cols, fmt.token_dim)
    if fmt.dims == 3:  # one frame: [N, C, 1, H, W]
        model = model.unsqueeze(2)
    assert torch.equal(tokens_to_model(tokens, fmt, grid), model)
    assert torch.equal(tokens_to_model(tokens[0], fmt, grid), model[:1])  # [L, D] without a batch axis
    if rows != cols and min(grid) > 1:  # the transposed grid holds as many tokens but puts them elsewhere
        assert not torch.equal(tokens_to_model(tokens, fmt, (cols, rows)), model.transpose(-1, -2))
    with pytest.raises(ShapeError, match=rf"grid {rows + 1}x{cols} holds .* grids that fit: "):
        tokens_to_model(tokens, fmt, (rows + 1, cols))


def test_token_form_errors():
    with pytest.raises(ShapeError, match="sd1 has no diffusers token form"):
        tokens_to_model(torch.zeros(1, 4, 16), get_format("sd1"), (2, 2))
    with pytest.raises(ShapeError, match=r"a flux1 token sequence is \[N, L, 64\]"):
        tokens_to_model(torch.zeros(1, 4, 128), get_format("flux1"), (2, 2))
    assert grid_options(1024) == [(32, 32), (64, 16), (16, 64), (128, 8)]
    assert grid_options(7) == [(7, 1), (1, 7)]
