"""latentbridge.models: our own small architectures, on real pretrained weights from ../shared/weights.

TAEF2 (TAESD with pool blocks), the A1111 VAEApprox previews and VAElight's ONNX pair are loaded
through ``load_vae`` (so strictly, with identity from the file) and judged on real photos.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderTiny
from safetensors.torch import save_file

from latentbridge.errors import ShapeError
from latentbridge.formats import get_format, raw_to_model
from latentbridge.models import TAESD, TAESDConfig, VAEApprox
from latentbridge.models.taesd import build_decoder, build_encoder
from latentbridge.photos import photo_tensor
from latentbridge.weights import describe, load_vae

# Same weights, same ops, same order: only float32 rounding of identical computations can differ.
PARITY = 1e-5


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
