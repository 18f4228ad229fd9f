"""latentbridge.models: our own small architectures, on real pretrained weights from ../shared/weights.

TAEF2 (TAESD with pool blocks), the A1111 VAEApprox previews and VAElight's ONNX pair are loaded
through ``load_vae`` (so strictly, with identity from the file) and judged on real photos. The TAESD family is
also written in every key layout (ComfyUI's combined form included) and must compute what its source module
(and ComfyUI's scaling) computes; TAEHV files are identified but refused by ``load_vae``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderTiny
from safetensors.torch import load_file, save_file
from torch import nn
from typer.testing import CliRunner

from latentbridge.cli import app
from latentbridge.errors import IncompatibleError, ShapeError, WeightsError
from latentbridge.formats import get_format, model_to_raw, raw_to_model
from latentbridge.models import TAESD, TAESDConfig, VAEApprox
from latentbridge.models.taesd import build_decoder, build_encoder
from latentbridge.photos import photo_tensor
from latentbridge.weights import describe, load_vae

# Same weights, same ops, same order: only float32 rounding of identical computations can differ.
PARITY = 1e-5
runner = CliRunner()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [-1, 1] (peak-to-peak 2)."""
    return 10 * math.log10(4 / F.mse_loss(a.clamp(-1, 1), b.clamp(-1, 1)).item())


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these small convolutions run ~100× slower when two threads contend for busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- TAEF2 -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def taef2(shared_weights):
    return load_vae([shared_weights / "taef2" / "taef2_encoder.pth", shared_weights / "taef2" / "taef2_decoder.pth"])


def test_taef2_identity(taef2):
    assert taef2.architecture == "taesd" and taef2.format is get_format("flux2")
    assert taef2.native_space == "model" and (taef2.channels, taef2.spatial_ratio) == (128, 16)
    assert taef2.stats is None  # TAEF2 files carry no BatchNorm statistics; FLUX.2's VAE does


@pytest.mark.parametrize("photo", ["astronaut", "chelsea"])
def test_taef2_round_trip_of_real_photos(taef2, photo):
    x = photo_tensor(photo, 512)
    with torch.inference_mode():
        z = taef2.encode(x)
        y = taef2.decode(z)
    assert z.shape == (1, 128, 32, 32) and y.shape == x.shape
    # FACTS.md: TAEF2 averages 32.0 dB at 512² on the bundled photos; 30 dB leaves room for CPU/BLAS variation
    # while still failing on a broken pool branch (16.9 dB without it) or a wrong image range.
    assert psnr(x, y) >= 30.0


def test_taef2_refuses_raw_latents(taef2):
    with pytest.raises(ShapeError, match=r"decodes model-space latents \[N, 128, h, w\], got shape \(1, 32, 8, 8\)"):
        taef2.decode(torch.zeros(1, 32, 8, 8))


def test_taesd_layers_match_the_published_state_dicts(shared_weights):
    cfg = TAESDConfig(32, "pool")
    for build, name in ((build_encoder, "taef2_encoder.pth"), (build_decoder, "taef2_decoder.pth")):
        ours = {k: tuple(v.shape) for k, v in build(cfg).state_dict().items()}
        theirs = torch.load(shared_weights / "taef2" / name, map_location="cpu", weights_only=True)
        assert ours == {k: tuple(v.shape) for k, v in theirs.items()}


# --- TAESD family through every layout -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channels", "variant", "signature", "formats"),
    [
        (4, "", "taesd", ("sd1", "sdxl")),
        (16, "", "taesd", ("sd3", "flux1")),
        (32, "pool", "taesd+pool", ("flux2",)),
        (32, "f32", "taesd+f32", ("sana",)),
    ],
)
@pytest.mark.parametrize("layout", ["sequential", "module"])
def test_taesd_variants_identify_and_load(tmp_path, channels, variant, signature, formats, layout):
    torch.manual_seed(channels)
    cfg = TAESDConfig(channels, variant)
    model = TAESD(cfg).eval()
    if layout == "sequential":  # two files, as published
        files = [tmp_path / "enc.pth", tmp_path / "dec.pth"]
        torch.save(model.encoder.state_dict(), files[0])
        torch.save(model.decoder.state_dict(), files[1])
    else:  # one file holding the module's state dict
        files = [tmp_path / "taesd.safetensors"]
        save_file(model.state_dict(), str(files[0]))
    info = describe(files[0])
    assert info.matches == (f"{signature}/{layout}",)
    assert (info.latent_channels, info.spatial_ratio, info.formats) == (channels, cfg.spatial_ratio, formats)
    vae = load_vae(files)
    r = cfg.spatial_ratio
    x = torch.rand(1, 3, 2 * r, 2 * r) * 2 - 1
    z = torch.randn(1, channels, 4, 4)
    with torch.no_grad():
        got = vae.encode(x)
        want = model.encode(x * 0.5 + 0.5)
        if variant == "pool":  # TAEF2 works in FLUX.2's packed model space
            want = want.reshape(1, 32, 1, 2, 1, 2).permute(0, 1, 3, 5, 2, 4).reshape(1, 128, 1, 1)
            z = z.reshape(1, 32, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(1, 128, 2, 2)
        assert (got - want).abs().max() <= PARITY
        unpacked = z if variant != "pool" else model_unpack(z)
        assert (vae.decode(z) - (model.decode(unpacked) * 2 - 1)).abs().max() <= PARITY


def model_unpack(z: torch.Tensor) -> torch.Tensor:
    """Depth-to-space 128 -> 32 channels, written out independently of latentbridge.formats.unpack."""
    n, _, h, w = z.shape
    return z.reshape(n, 32, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, 32, 2 * h, 2 * w)


def test_diffusers_autoencoder_tiny_layout(tmp_path):
    """diffusers' AutoencoderTiny files load into our TAESD and compute what AutoencoderTiny computes."""
    torch.manual_seed(0)
    tiny = AutoencoderTiny().eval()
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file(tiny.state_dict(), str(path))
    assert describe(path).matches == ("taesd/diffusers",)
    vae = load_vae(path)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    z = torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        assert (vae.encode(x) - tiny.encode(x).latents).abs().max() <= PARITY
        assert (vae.decode(z) - tiny.decode(z).sample).abs().max() <= PARITY


# --- ComfyUI's combined TAESD state dict -------------------------------------------------------------------


def comfy_taesd_file(path, model: TAESD, scalars: tuple[float, float] | None):
    """Write ``model`` the way ComfyUI's VAELoader assembles a TAESD (taesd_encoder./taesd_decoder. + scalars)."""
    state = {f"taesd_encoder.{k}": v for k, v in model.encoder.state_dict().items()}
    state |= {f"taesd_decoder.{k}": v for k, v in model.decoder.state_dict().items()}
    if scalars is not None:
        state["vae_scale"], state["vae_shift"] = torch.tensor(scalars[0]), torch.tensor(scalars[1])
    save_file(state, str(path))
    return path


# ComfyUI's VAELoader: (name, latent channels, vae_scale, vae_shift) -> the format those scalings are
COMFY_TAESDS = [
    ("taesd", 4, (0.18215, 0.0), "sd1", ("sd1", "sdxl")),
    ("taesdxl", 4, (0.13025, 0.0), "sdxl", ("sd1", "sdxl")),
    ("taesd3", 16, (1.5305, 0.0609), "sd3", ("sd3", "flux1")),
    ("taef1", 16, (0.3611, 0.1159), "flux1", ("sd3", "flux1")),
]


@pytest.mark.parametrize(
    ("name", "channels", "scalars", "fmt", "candidates"), COMFY_TAESDS, ids=[c[0] for c in COMFY_TAESDS]
)
def test_comfyui_combined_taesd(tmp_path, name, channels, scalars, fmt, candidates):
    """The header says only "sd1 or sdxl"; loading reads vae_scale/vae_shift and computes what ComfyUI computes."""
    torch.manual_seed(channels)
    model = TAESD(TAESDConfig(channels)).eval()
    path = comfy_taesd_file(tmp_path / f"{name}.safetensors", model, scalars)
    info = describe(path)
    assert info.matches == ("taesd/comfyui",) and info.has_encoder and info.has_decoder
    assert (info.latent_channels, info.spatial_ratio, info.formats, info.format) == (channels, 8, candidates, None)
    assert any(
        "also carries vae_scale and vae_shift (ComfyUI's latent scaling), whose values name the format" in n
        for n in info.notes
    )
    vae = load_vae(path)
    assert vae.format is get_format(fmt) and vae.native_space == "model"
    scale, shift = (torch.tensor(v) for v in scalars)  # as ComfyUI holds them: float32 tensors
    torch.manual_seed(1)
    raw = torch.randn(1, channels, 4, 4) * 3
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        comfy_decoded = model.decode((raw - shift) * scale) * 2 - 1  # ComfyUI's TAESD.decode on raw latents
        comfy_encoded = model.encode(x * 0.5 + 0.5) / scale + shift  # ComfyUI's TAESD.encode -> raw latents
        assert (vae.decode(raw_to_model(raw, vae.format)) - comfy_decoded).abs().max() <= PARITY
        assert (model_to_raw(vae.encode(x), vae.format) - comfy_encoded).abs().max() <= PARITY


def test_comfyui_combined_taef2_and_no_scalars(tmp_path):
    torch.manual_seed(3)
    taef2 = TAESD(TAESDConfig(32, "pool")).eval()
    info = describe(comfy_taesd_file(tmp_path / "taef2.safetensors", taef2, None))
    assert info.matches == ("taesd+pool/comfyui",) and info.format == "flux2"
    vae = load_vae(tmp_path / "taef2.safetensors", part="decoder")
    z = torch.randn(1, 128, 2, 2)
    with torch.no_grad():
        assert (vae.decode(z) - (taef2.decode(model_unpack(z)) * 2 - 1)).abs().max() <= PARITY
    plain = comfy_taesd_file(tmp_path / "taesd.safetensors", TAESD(TAESDConfig(4)).eval(), None)
    info = describe(plain)
    assert info.formats == ("sd1", "sdxl") and not any("vae_scale" in n for n in info.notes)
    assert load_vae(plain).format is None  # nothing in the file tells sd1 from sdxl: said, not guessed


def test_comfyui_scalars_contradicting_the_format_are_refused(tmp_path):
    path = comfy_taesd_file(tmp_path / "taesd.safetensors", TAESD(TAESDConfig(4)).eval(), (0.18215, 0.0))
    with pytest.raises(
        IncompatibleError, match=r"carries vae_scale=0\.18215, vae_shift=0, the scaling of 'sd1', but format 'sdxl'"
    ):
        load_vae(path, format="sdxl")
    assert load_vae(path, format="sd1").format is get_format("sd1")


def test_comfyui_damaged_scalar_is_refused(tmp_path):
    model = TAESD(TAESDConfig(4)).eval()
    path = comfy_taesd_file(tmp_path / "taesd.safetensors", model, (0.18215, 0.0))
    state = {**load_file(str(path)), "vae_scale": torch.ones(2)}
    save_file(state, str(path))
    with pytest.raises(WeightsError, match=r"vae_scale should hold one floating-point number .* shape \(2,\)"):
        load_vae(path)


def test_inspect_comfyui_taesd(tmp_path):
    path = comfy_taesd_file(tmp_path / "taesdxl.safetensors", TAESD(TAESDConfig(4)).eval(), (0.13025, 0.0))
    result = runner.invoke(app, ["inspect", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output.splitlines()
    want = ("signature     taesd/comfyui", "latent        4 channels, 8× spatial", "format        one of sd1, sdxl")
    assert [w for w in want if not any(o.startswith(w) for o in out)] == []


# --- TAEHV: identified, not loadable ---------------------------------------------------------------------


def _conv3(c_in: int, c_out: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)


class _MemBlock(nn.Module):
    """TAEHV's MemBlock parameters: a 3×3 conv over the frame and its predecessor, then two more (skip: identity)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv3(2 * c, c), nn.ReLU(), _conv3(c, c), nn.ReLU(), _conv3(c, c))


class _TimeConv(nn.Module):
    """TAEHV's TPool / TGrow parameters: one 1×1 conv folding frames into channels (or back)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 1, bias=False)


def taehv_state(latent: int, patch: int) -> dict[str, torch.Tensor]:
    """A TAEHV state dict with madebyollin/taehv's layer layout (taehv.py), zero-filled: detection reads shapes."""
    pixels = 3 * patch * patch
    encoder: list[nn.Module] = [_conv3(pixels, 64), nn.ReLU()]
    for time_stride in (2, 2, 1):
        encoder += [_TimeConv(64 * time_stride, 64), _conv3(64, 64, 2, bias=False)]
        encoder += [_MemBlock(64), _MemBlock(64), _MemBlock(64)]
    encoder.append(_conv3(64, latent))
    widths = (256, 128, 64, 64)
    decoder: list[nn.Module] = [nn.Identity(), _conv3(latent, 256), nn.ReLU()]  # Identity: the soft clamp
    for stage, time_stride in enumerate((1, 2, 2)):
        w = widths[stage]
        decoder += [_MemBlock(w), _MemBlock(w), _MemBlock(w), nn.Upsample(scale_factor=2)]
        decoder += [_TimeConv(w, w * time_stride), _conv3(w, widths[stage + 1], bias=False)]
    decoder += [nn.ReLU(), _conv3(64, pixels)]
    with torch.device("meta"):
        module = nn.ModuleDict({"encoder": nn.Sequential(*encoder), "decoder": nn.Sequential(*decoder)})
    return {k: torch.zeros(v.shape, dtype=torch.float16) for k, v in module.state_dict().items()}


@pytest.mark.parametrize(
    ("latent", "patch", "signature", "ratio", "formats"),
    [
        (16, 1, "taehv/module", 8, ("wan21", "hunyuan_video", "cogvideox", "cogvideox_2b")),  # taehv, taew2_1, taecvx
        (48, 2, "taehv+p2/module", 16, ("wan22",)),  # taew2_2
    ],
)
def test_taehv_is_identified_and_not_loaded(tmp_path, latent, patch, signature, ratio, formats):
    path = tmp_path / "taehv.safetensors"
    save_file(taehv_state(latent, patch), str(path))
    info = describe(path)
    assert info.matches == (signature,) and info.architecture == "taehv"
    assert (info.latent_channels, info.spatial_ratio, info.dims, info.native_space) == (latent, ratio, 3, "model")
    assert info.formats == formats and info.format == (formats[0] if len(formats) == 1 else None)
    assert any("latentbridge identifies TAEHV files but cannot load them yet" in n for n in info.notes)
    with pytest.raises(WeightsError, match=r"TAEHV tiny video autoencoder .* cannot load this architecture yet"):
        load_vae(path)
    result = runner.invoke(app, ["inspect", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"signature     {signature}" in result.output and "identified only" in result.output


# --- VAElight --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vaelight(shared_weights):
    folder = shared_weights / "vaelight-sd1"
    return load_vae([folder / "VAEencoder.onnx", folder / "VAEpreview.onnx"])


@pytest.fixture(scope="module")
def astronaut_sd1(vaelight):
    """The astronaut at 512 px and its raw SD1 latent from VAElight's encoder."""
    x = photo_tensor("astronaut", 512)
    return x, vaelight.encode(x)


def test_vaelight_round_trip(vaelight, astronaut_sd1):
    x, z = astronaut_sd1
    assert vaelight.native_space == "raw" and vaelight.format is get_format("sd1") and vaelight.module is None
    assert z.shape == (1, 4, 64, 64)
    assert 3.0 < z.std().item() < 8.0  # raw SD1 latents spread with std ≈ 5 (FACTS.md), scaled ones ≈ 1
    y = vaelight.decode(z)
    assert y.shape == x.shape
    # Measured 23.3 dB (astronaut, 512²); VAElight is a 200k-parameter approximation, so the floor is modest,
    # but a decoder that used only its base band, or read scaled latents, lands below 21 dB.
    assert psnr(x, y) >= 22.0


def test_vaelight_bands_all_count(shared_weights, astronaut_sd1):
    import onnxruntime as ort

    x, z = astronaut_sd1
    session = ort.InferenceSession(
        str(shared_weights / "vaelight-sd1" / "VAEpreview.onnx"), providers=["CPUExecutionProvider"]
    )
    bands = [torch.from_numpy(b) for b in session.run(None, {"latent": z.numpy()})]
    assert sorted(b.shape[-1] for b in bands) == [64, 128, 256, 512]
    base = F.interpolate(bands[0], size=(512, 512), mode="bilinear", align_corners=False)
    full = sum(F.interpolate(b, size=(512, 512), mode="bilinear", align_corners=False) for b in bands)
    # the three frequency bands add detail: the sum beats the base image alone by well over 1 dB
    assert psnr(x, full) > psnr(x, base) + 1.0


def test_vaelight_refuses_other_latents(vaelight):
    with pytest.raises(ShapeError, match=r"VAElight decodes raw SD1 latents \[N, 4, h, w\], got shape \(1, 16, 8, 8\)"):
        vaelight.decode(torch.zeros(1, 16, 8, 8))


# --- VAEApprox -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "channels"), [("sd1", 4), ("sdxl", 4), ("sd3", 16)])
def test_vaeapprox_loads_strictly(shared_weights, name, channels):
    vae = load_vae(shared_weights / "vaeapprox" / f"vaeapprox-{name}.pt")
    assert vae.architecture == "vaeapprox" and vae.format is get_format(name)
    assert vae.encode is None and vae.native_space == "model"
    assert (vae.channels, vae.output_ratio) == (channels, 2)
    torch.manual_seed(0)
    with torch.no_grad():
        y = vae.decode(torch.randn(1, channels, 12, 20))
    assert y.shape == (1, 3, 24, 40) and torch.isfinite(y).all()


def test_vaeapprox_previews_a_real_sd1_latent(shared_weights, astronaut_sd1):
    """Decode VAElight's SD1 latent of a real photo with the SD1 and SDXL previews."""
    x, z = astronaut_sd1
    model = raw_to_model(z, get_format("sd1"))
    small = F.interpolate(x, size=(128, 128), mode="area")  # the preview is at 2× the latent size
    scores = {}
    for name in ("sd1", "sdxl"):
        vae = load_vae(shared_weights / "vaeapprox" / f"vaeapprox-{name}.pt")
        with torch.no_grad():
            y = vae.decode(model)
        corr = np.corrcoef(small.flatten().numpy(), y.flatten().numpy())[0, 1]
        scores[name] = (psnr(small, y), corr)
    # Measured: sd1 23.4 dB, r 0.98; sdxl 13.2 dB, r 0.75. An SD1 preview of an SD1 latent must look like the
    # photo, and clearly better than the SDXL preview of the same latent (the wrong latent space).
    assert scores["sd1"][0] >= 20.0 and scores["sd1"][1] >= 0.95
    assert scores["sd1"][0] >= scores["sdxl"][0] + 5.0


def test_vaeapprox_geometry():
    model = VAEApprox(16)
    with torch.no_grad():
        assert model(torch.zeros(2, 16, 5, 7)).shape == (2, 3, 10, 14)


def test_taesd_config_is_checked():
    with pytest.raises(ValueError, match=r"unknown TAESD variant 'f64': expected one of \('', 'pool', 'f32'\)"):
        TAESDConfig(4, "f64")
    with pytest.raises(RuntimeError, match="this TAESD has no decoder: load the \\*_decoder weights too"):
        TAESD(TAESDConfig(4), decoder=False).decode(torch.zeros(1, 4, 2, 2))
