"""`latentbridge encode` and `latentbridge decode` end to end, as a user types them (real TAEF2 weights, zoo)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from latentbridge import codec, zoo
from latentbridge.cli import app
from latentbridge.files import read_latent, write_latent
from latentbridge.formats import get_format
from latentbridge.images import read_png_metadata, to_uint8
from latentbridge.latent import Latent
from latentbridge.metrics import psnr
from latentbridge.photos import HELDOUT_PHOTOS, load_photo, photo_tensor
from latentbridge.run import Run, Tiling

pytest.importorskip("latentbridge.weights", reason="latentbridge.weights (load_vae) is not in this checkout yet")

runner = CliRunner()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these are small tensors on a shared 2-core machine, where 1 thread is 1.4-5× faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def taef2_spec(shared_weights) -> str:
    folder = shared_weights / "taef2"
    return f"{folder / 'taef2_encoder.pth'},{folder / 'taef2_decoder.pth'}"


@pytest.fixture
def photo_png(tmp_path) -> tuple:
    """chelsea (300×451: not a multiple of 16 either way) as a PNG file, and its pixels."""
    pixels = load_photo("chelsea")
    path = tmp_path / "chelsea.png"
    Image.fromarray(pixels).save(path)
    return path, pixels


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_encode_then_decode_round_trip_with_padding(tmp_path, taef2_spec, photo_png):
    image, pixels = photo_png
    lat_path = tmp_path / "cat.latent"  # ComfyUI's FLUX.2 LATENT holds the model-space tensor, as TAEF2 makes it
    result = invoke("encode", image, "--vae", taef2_spec, "-o", lat_path, "--pad")
    assert result.exit_code == 0, result.output
    assert "flux2 model-space latent 1×128×19×29" in result.output
    latent = read_latent(lat_path)
    assert latent.format_name == "flux2" and latent.space == "model"
    assert latent.provenance.vae_sha256 and "taef2_encoder.pth" in latent.provenance.vae_name
    assert dict(latent.provenance.extra)["padding"] == "2,2,6,7"  # 300×451 -> 304×464

    out = tmp_path / "cat.png"
    result = invoke("decode", lat_path, "--vae", taef2_spec, "-o", out)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out)
    with Image.open(out) as im:
        decoded = np.asarray(im)
    assert decoded.shape == pixels.shape  # the padding was cropped off again
    err = decoded.astype(np.float64) - pixels
    # TAEF2 reconstructs photos at ~30 dB (FACTS.md); 25 dB leaves room, a wrong space or crop gives < 15 dB
    assert 10 * np.log10(255.0**2 / (err**2).mean()) > 25
    meta = read_png_metadata(out)
    assert meta["format"] == "flux2" and meta["space"] == "model" and meta["vae_sha256"]
    assert meta["provenance"]["source_image"] == "chelsea.png"


def test_decode_png_equals_the_library_decode(tmp_path, taef2_spec):
    from latentbridge.weights import load_vae

    g = torch.Generator().manual_seed(0)
    latent = Latent(torch.randn(2, 128, 8, 8, generator=g), format=get_format("flux2"), space="model")
    path = write_latent(latent, tmp_path / "two.safetensors", container="safetensors")
    result = invoke("decode", path, "--vae", taef2_spec, "-o", tmp_path / "two.png", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    expected = codec.decode(load_vae(taef2_spec.split(",")), latent, run=Run(batch_size=2))
    for i in range(2):
        with Image.open(tmp_path / f"two-{i}.png") as im:
            np.testing.assert_array_equal(np.asarray(im), to_uint8(expected)[i])  # bit-exact 8-bit output
        assert read_png_metadata(tmp_path / f"two-{i}.png")["batch_index"] == i


def test_memory_budget_tiles_and_says_so(tmp_path, taef2_spec):
    latent = Latent(torch.randn(1, 128, 16, 16), format=get_format("flux2"), space="model")
    path = write_latent(latent, tmp_path / "big.safetensors", container="safetensors")
    from latentbridge.weights import load_vae

    vae = load_vae(taef2_spec.split(","))
    need = codec.estimate_memory(vae, latent.shape)
    budget = codec.estimate_memory(
        vae, latent.shape, run=Run(tiling=Tiling(tile=128))
    )  # what 128-px tiles (2 passes) are estimated at
    assert budget < need  # so the whole image does not fit the budget and tiles must
    result = invoke("decode", path, "--vae", taef2_spec, "-o", tmp_path / "big.png", "--max-memory", str(budget))
    assert result.exit_code == 0, result.output
    assert "warning: decode of a 256×256-px image" in result.output and "runs in tiles of" in result.output
    with Image.open(tmp_path / "big.png") as im:
        assert im.size == (256, 256)


def test_errors_are_one_red_line(tmp_path, taef2_spec, photo_png, shared_weights):
    image, _ = photo_png
    result = invoke("encode", image, "--vae", taef2_spec, "-o", tmp_path / "x.latent")
    assert result.exit_code == 1
    assert "error: image chelsea.png is 300×451 but this latent format needs sizes that are multiples of 16" in (
        result.output
    )
    result = invoke("encode", image, "--vae", taef2_spec, "-o", tmp_path / "x.latent", "--crop", "--pad")
    assert result.exit_code == 1 and "error: pad and crop were both requested; choose one" in result.output
    assert not (tmp_path / "x.latent").exists()

    latent = Latent(torch.randn(1, 128, 4, 4), format=get_format("flux2"), space="model")
    path = write_latent(latent, tmp_path / "f2.safetensors", container="safetensors")
    approx = shared_weights / "vaeapprox" / "vaeapprox-sd1.pt"
    result = invoke("decode", path, "--vae", approx, "-o", tmp_path / "f2.png")
    assert result.exit_code == 1
    assert "error: refusing to decode, `latentbridge check` found channel-mismatch: the latent has 128" in result.output
    assert len(result.output.strip().splitlines()) == 1

    (tmp_path / "f2.png").write_bytes(b"")
    result = invoke("decode", path, "--vae", taef2_spec, "-o", tmp_path / "f2.png")
    assert result.exit_code == 1 and "already exist(s); pass --overwrite" in result.output
    result = invoke("decode", path, "--vae", taef2_spec, "-o", tmp_path / "f2.jpg")
    assert result.exit_code == 1 and "images are written as PNG; name the output e.g. f2.png" in result.output
    result = invoke("decode", path, "--vae", taef2_spec, "-o", tmp_path / "g.png", "--dtype", "fp8")
    assert result.exit_code == 1 and "unknown compute dtype 'fp8'" in result.output


@pytest.mark.parametrize("name", zoo.ZOO_NAMES)
def test_zoo_round_trip(tmp_path, name):
    if not zoo.zoo_path(name).is_file():
        pytest.skip(f"zoo VAE {name} is not built in this checkout ({zoo.zoo_path(name)} missing)")
    pixels = load_photo("astronaut")[:256, :256]
    Image.fromarray(pixels).save(tmp_path / "a.png")
    result = invoke("encode", tmp_path / "a.png", "--vae", name, "-o", tmp_path / "a.latent")
    assert result.exit_code == 0, result.output
    latent = read_latent(tmp_path / "a.latent")
    assert latent.format_name == name and latent.space == "raw"
    result = invoke("decode", tmp_path / "a.latent", "--vae", name, "-o", tmp_path / "a.png", "--overwrite")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "a.png") as im:
        got = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)[None] / 255
    ref = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None] / 255
    assert psnr(got, ref).item() > 20  # zoo VAEs reconstruct held-out photos well above 20 dB (zoo.json)


# --- real-world paths and output names -------------------------------------------------------------------


@pytest.fixture
def zoo_a() -> str:
    if not zoo.zoo_path("zoo-a").is_file():
        pytest.skip(f"zoo VAE zoo-a is not built in this checkout ({zoo.zoo_path('zoo-a')} missing)")
    return str(zoo.zoo_path("zoo-a"))


def test_vae_path_with_commas_spaces_and_unicode(tmp_path, zoo_a):
    """A file name like "vae (v1, fp16).safetensors" is one file, not an ENCODER,DECODER pair."""
    vae = tmp_path / "VAE (v1, fp16) ünï.safetensors"
    vae.write_bytes(Path(zoo_a).read_bytes())
    path = write_latent(Latent(torch.randn(1, 4, 4, 4), get_format("zoo-a"), "raw"), tmp_path / "my latent, ü.LATENT")
    result = invoke("decode", path, "--vae", vae, "-o", tmp_path / "out ü.PNG")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out ü.PNG") as im:
        assert im.size == (32, 32)


def test_output_folder_is_checked_before_any_work(tmp_path, zoo_a, monkeypatch):
    import latentbridge.weights

    def no_loading(*args, **kwargs):
        raise AssertionError("the VAE was loaded before the output folder was checked")

    monkeypatch.setattr(latentbridge.weights, "load_vae", no_loading)
    path = write_latent(Latent(torch.randn(1, 4, 4, 4), get_format("zoo-a"), "raw"), tmp_path / "a.latent")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "a.png")
    for argv in (("decode", path), ("encode", tmp_path / "a.png")):
        result = invoke(*argv, "--vae", zoo_a, "-o", tmp_path / "missing" / "x.png")
        assert result.exit_code == 1
        assert f"error: output folder {tmp_path / 'missing'} does not exist: create it first" in result.output

    class ReadOnlyFolders:  # `os` as the CLI's output check sees a read-only folder (root may write anywhere)
        access = staticmethod(lambda *args: False)

        def __getattr__(self, name):
            return getattr(os, name)

    monkeypatch.setattr("latentbridge.cli._common.os", ReadOnlyFolders())
    result = invoke("decode", path, "--vae", zoo_a, "-o", tmp_path / "x.png")
    assert result.exit_code == 1 and f"cannot write into folder {tmp_path} (permission denied)" in result.output


def test_encode_container_follows_the_output_name(tmp_path, zoo_a):
    """`-o out.npy` writes a NumPy file NumPy opens (it was a safetensors file named .npy)."""
    Image.fromarray(load_photo("astronaut")[:32, :32]).save(tmp_path / "a.png")
    for name in ("a.npy", "A.NPZ", "a.pt", "a.safetensors", "a.latent"):
        result = invoke("encode", tmp_path / "a.png", "--vae", zoo_a, "-o", tmp_path / name)
        assert result.exit_code == 0, result.output
    lat = read_latent(tmp_path / "a.latent")
    assert np.array_equal(np.load(tmp_path / "a.npy"), lat.tensor.numpy())
    with np.load(tmp_path / "A.NPZ") as npz:
        assert np.array_equal(npz["latent"], lat.tensor.numpy())
    assert torch.equal(torch.load(tmp_path / "a.pt", weights_only=True)["latent"], lat.tensor)
    assert torch.equal(read_latent(tmp_path / "a.safetensors").tensor, lat.tensor)
    result = invoke("encode", tmp_path / "a.png", "--vae", zoo_a, "-o", tmp_path / "b.npy", "--container", "latent")
    assert result.exit_code == 1 and "b.npy is named like a .npy file, but container 'latent'" in result.output
    assert not (tmp_path / "b.npy").exists()


def test_frames_of_an_image_latent_decode_one_by_one(tmp_path, shared_weights):
    """An AnimateDiff-style [1, 4, T, h, w] SD1 latent with an SD1 decoder: checked ok, one PNG per frame."""
    from latentbridge.codec import encode
    from latentbridge.weights import load_vae

    light = load_vae(str(shared_weights / "vaelight-sd1" / "VAEencoder.onnx"), part="encoder")
    frames = encode(light, torch.cat([photo_tensor(n, 64) for n in HELDOUT_PHOTOS]))
    torch.save(frames.tensor.transpose(0, 1)[None].contiguous(), tmp_path / "clip.pt")  # a bare [1, 4, 3, 8, 8]
    decoder = str(shared_weights / "vaelight-sd1" / "VAEpreview.onnx")
    args = [str(tmp_path / "clip.pt"), "--vae", decoder, "--space", "raw"]
    checked = runner.invoke(app, ["check", *args], env={"COLUMNS": "200"})
    assert checked.exit_code == 0 and "image-frames" in checked.output, checked.output
    result = runner.invoke(app, ["decode", *args, "-o", str(tmp_path / "f.png")])
    assert result.exit_code == 0, result.output
    pngs = sorted(tmp_path.glob("f-*.png"))
    assert len(pngs) == len(HELDOUT_PHOTOS)
    (tmp_path / "g.png").touch()  # not one of the files a clip's decode writes (g-0.png …): no refusal
    torch.save(frames.tensor[None], tmp_path / "svd.pt")  # SVD keeps frames first: [1, T, 4, h, w]
    by_layout = runner.invoke(
        app, ["decode", str(tmp_path / "svd.pt"), "--vae", decoder, "--space", "raw", "--layout", "NTCHW", "-o",
              str(tmp_path / "g.png")],
    )  # fmt: skip
    assert by_layout.exit_code == 0, by_layout.output
    assert [np.asarray(Image.open(p)).tolist() for p in sorted(tmp_path.glob("g-*.png"))] == [
        np.asarray(Image.open(p)).tolist() for p in pngs
    ]
    # frame k of the clip is photo k's latent: its PNG is that latent's own decode
    alone = codec.decode(load_vae(decoder, part="decoder"), frames)
    for k, png in enumerate(pngs):
        assert np.array_equal(np.asarray(Image.open(png)), to_uint8(alone[k]))


def test_decode_draws_the_codec_progress_bar_on_a_terminal(tmp_path):
    """The bar the codec drew itself before (label with the tile plan, done/total) now comes from the Run's
    progress callback; it appears on a terminal (FORCE_COLOR makes rich treat the test's stderr as one) only."""
    import re

    path = write_latent(Latent(torch.randn(1, 4, 16, 16), get_format("zoo-a"), "raw"), tmp_path / "a.latent")
    args = ["decode", str(path), "--vae", "zoo-a", "-o", str(tmp_path / "a.png"), "--tile", "64", "--force"]
    shown = runner.invoke(app, args, env={"COLUMNS": "120", "FORCE_COLOR": "1"})
    assert shown.exit_code == 0, shown.output
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.output)  # the bar's ANSI control codes
    assert "decode zoo-a (9 tiles of 56×56 px)" in text and "18/18" in text  # 9 tiles × 2 GroupNorm passes
    quiet = runner.invoke(app, [*args, "--overwrite"], env={"COLUMNS": "120"})
    assert quiet.exit_code == 0 and "tiles of" not in quiet.output
