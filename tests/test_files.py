"""latentbridge.files: every container round-trips bit-exactly, ComfyUI and kohya files read as their writers
meant, impostor and unsafe files give one clear error, and nothing is executed or overwritten."""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from latentbridge import __version__
from latentbridge.errors import FileFormatError, IncompatibleError
from latentbridge.files import (
    CONTAINERS,
    KOHYA_SPACE,
    classify,
    latent_stats,
    open_latent,
    read_latent,
    sniff,
    write_latent,
)
from latentbridge.formats import get_format, model_to_raw
from latentbridge.latent import Latent, Provenance

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
PROVENANCE = Provenance(vae_name="zoo-a", seed=11, prompt="a red fox", tool="test", history=("encode zoo-a",))


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bytes of a tensor, so that equality covers NaN payloads and signed zeros."""
    return t.contiguous().reshape(-1).view(torch.uint8)


def _tricky(shape: tuple[int, ...], dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Random values plus the special ones a lossy path would break: NaN with a payload, ±inf, -0.0, tiny values."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g) * 4).to(dtype).reshape(-1)
    x[1], x[2], x[3] = float("inf"), float("-inf"), -0.0
    x[4] = torch.finfo(dtype).tiny
    nan_bits = {torch.float32: 0x7FC00123, torch.float16: 0x7E01, torch.bfloat16: 0x7FC1}[dtype]
    int_type = {4: torch.int32, 2: torch.int16}[x.element_size()]
    x.view(int_type)[0] = nan_bits - (1 << 32 if nan_bits >= 1 << 31 else 0)
    return x.reshape(shape)


def comfy_load_latent(path: Path) -> torch.Tensor:
    """ComfyUI's LoadLatent, re-implemented from its documented behaviour (nodes.py): load the safetensors file,
    multiply ``latent_tensor`` (as float32) by 1/0.18215 when ``latent_format_version_0`` is absent."""
    data = safetensors.torch.load_file(str(path), device="cpu")
    multiplier = 1.0 if "latent_format_version_0" in data else 1.0 / 0.18215
    return data["latent_tensor"].float() * multiplier


def comfy_save_latent(samples: torch.Tensor, path: Path, *, prompt: dict | None, workflow: dict | None) -> None:
    """ComfyUI's SaveLatent, byte-for-byte: the same keys, the same metadata, the same library call
    (``comfy.utils.save_torch_file`` is ``safetensors.torch.save_file``). ``prompt=None`` and ``workflow=None``
    is the ``--disable-metadata`` case, where ComfyUI passes no metadata at all."""
    output = {"latent_tensor": samples, "latent_format_version_0": torch.tensor([])}
    if prompt is None and workflow is None:
        safetensors.torch.save_file(output, str(path))
        return
    metadata = {"prompt": json.dumps(prompt) if prompt is not None else ""}
    if workflow is not None:
        metadata["workflow"] = json.dumps(workflow)  # each extra_pnginfo entry, json.dumps'ed
    safetensors.torch.save_file(output, str(path), metadata=metadata)


# --- round trips -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["image", "video"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("container", CONTAINERS)
def test_round_trip_keeps_bits_dtype_and_record(tmp_path, container, dtype, kind):
    fmt, shape = (get_format("sdxl"), (2, 4, 5, 6)) if kind == "image" else (get_format("wan21"), (1, 16, 3, 4, 2))
    lat = Latent(_tricky(shape, dtype), fmt, "raw", fmt.layout, PROVENANCE)
    path = write_latent(lat, tmp_path / "x.bin", container=container)  # the name says nothing on purpose
    back = read_latent(path)
    assert back.tensor.dtype == dtype and back.shape == shape
    assert torch.equal(_bits(back.tensor), _bits(lat.tensor))
    assert (back.format_name, back.space, back.layout) == (fmt.name, "raw", fmt.layout)
    assert back.provenance == PROVENANCE


@pytest.mark.parametrize("container", [c for c in CONTAINERS if c != "latent"])
def test_model_space_and_layout_are_kept_as_written(tmp_path, container):
    x = torch.randn(1, 6, 5, 16)  # NHWC flux1 model-space latent
    lat = Latent(x, get_format("flux1"), "model", "NHWC")
    back = read_latent(write_latent(lat, tmp_path / "f", container=container))
    assert (back.space, back.layout, back.format_name) == ("model", "NHWC", "flux1")
    assert torch.equal(back.tensor, x)


def test_unknown_format_and_space_round_trip_as_unknown(tmp_path):
    lat = Latent(torch.randn(1, 4, 3, 3))
    for container in CONTAINERS:
        back = read_latent(write_latent(lat, tmp_path / container, container=container))
        assert back.format is None and back.space == "unknown"


def test_files_are_deterministic(tmp_path):
    lat = Latent(torch.randn(1, 4, 3, 3).bfloat16(), get_format("sd1"), "raw", provenance=PROVENANCE)
    for container in CONTAINERS:
        a = write_latent(lat, tmp_path / f"a.{container}", container=container).read_bytes()
        b = write_latent(lat, tmp_path / f"b.{container}", container=container).read_bytes()
        assert a == b, container


def test_golden_latent_header(tmp_path):
    lat = Latent(
        torch.arange(16, dtype=torch.float32).reshape(1, 4, 2, 2),
        get_format("sd1"),
        "raw",
        provenance=Provenance(seed=7, tool="golden"),
    )
    data = write_latent(lat, tmp_path / "golden.latent").read_bytes()
    expected = (
        '{"__metadata__":{"latentbridge.format":"sd1","latentbridge.layout":"NCHW",'
        '"latentbridge.provenance":"{\\"seed\\": 7, \\"tool\\": \\"golden\\"}","latentbridge.space":"raw",'
        f'"latentbridge.version":"{__version__}"}},'
        '"latent_format_version_0":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},'
        '"latent_tensor":{"dtype":"F32","shape":[1,4,2,2],"data_offsets":[0,64]}}'
    ).encode()
    expected += b" " * (-len(expected) % 8)
    (n,) = struct.unpack("<Q", data[:8])
    assert data[8 : 8 + n] == expected
    assert data[8 + n :] == struct.pack("<16f", *range(16))
    # the reference library reads what we wrote
    loaded = safetensors.torch.load_file(str(tmp_path / "golden.latent"))
    assert torch.equal(loaded["latent_tensor"], lat.tensor)


def test_npz_is_plain_numpy_and_bf16_is_exact_float32(tmp_path):
    x = torch.randn(1, 4, 3, 3).bfloat16()
    path = write_latent(Latent(x, get_format("sd1"), "raw"), tmp_path / "l.npz", container="npz")
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["__latentbridge__", "latent"]
        assert npz["latent"].dtype == np.float32
        np.testing.assert_array_equal(npz["latent"], x.float().numpy())  # a plain NumPy user sees the true values
        record = json.loads(str(npz["__latentbridge__"]))
    assert record["latentbridge.dtype"] == "bfloat16" and record["latentbridge.format"] == "sd1"


def test_npy_sidecar_holds_the_record(tmp_path):
    x = torch.randn(1, 4, 3, 3).bfloat16()
    path = write_latent(Latent(x, get_format("sd3"), "model"), tmp_path / "l.npy", container="npy")
    side = tmp_path / "l.npy.latentbridge.json"
    assert json.loads(side.read_text())["latentbridge.dtype"] == "bfloat16"
    assert np.load(path).dtype == np.float32
    side.unlink()  # without its record an .npy is a plain float32 array of unknown format
    back = read_latent(path)
    assert back.tensor.dtype == torch.float32 and back.format is None
    assert torch.equal(back.tensor, x.float())


def test_write_latent_converts_model_space_to_raw_for_comfyui(tmp_path):
    fmt = get_format("sd3")
    model = torch.randn(1, 16, 4, 4)
    path = write_latent(Latent(model, fmt, "model"), tmp_path / "m.latent")
    back = read_latent(path)
    assert back.space == "raw"
    torch.testing.assert_close(back.tensor, model_to_raw(model, fmt))


def test_write_latent_canonicalises_layout_for_comfyui(tmp_path):
    x = torch.randn(4, 5, 6)  # CHW, format unknown, raw
    path = write_latent(Latent(x, space="raw", layout="CHW"), tmp_path / "c.latent")
    assert torch.equal(comfy_load_latent(path), x[None])
    assert read_latent(path).layout == "NCHW"


def test_write_latent_stores_extra_metadata_beside_the_record(tmp_path):
    """What ComfyUI's SaveLatent stores (prompt and workflow JSON) goes into the .latent's metadata, so provenance
    readers trace a file the ComfyUI pack saved; the record stays latentbridge's own."""
    prompt = json.dumps({"3": {"class_type": "VAEEncode", "inputs": {}}})
    lat = Latent(torch.randn(1, 4, 2, 2), "sd1", "raw")
    path = write_latent(lat, tmp_path / "a.latent", metadata={"prompt": prompt, "workflow": "{}"})
    info = open_latent(path)
    assert info.metadata["prompt"] == prompt and info.metadata["workflow"] == "{}"
    assert info.latent.format_name == "sd1" and info.writer == "latentbridge"
    assert torch.equal(comfy_load_latent(path), lat.tensor)
    path = write_latent(lat, tmp_path / "b.safetensors", container="safetensors", metadata={"prompt": prompt})
    assert open_latent(path).metadata["prompt"] == prompt


@pytest.mark.parametrize(
    ("container", "metadata", "message"),
    [
        ("pt", {"prompt": "{}"}, "only in safetensors containers"),
        ("latent", {"latentbridge.format": "sdxl"}, "latentbridge's record"),
        ("latent", {"prompt": {"3": {}}}, "must be strings"),
    ],
)
def test_write_latent_refuses_metadata_it_cannot_store(tmp_path, container, metadata, message):
    lat = Latent(torch.randn(1, 4, 2, 2), "sd1", "raw")
    with pytest.raises(ValueError, match=message):
        write_latent(lat, tmp_path / f"a.{container}", container=container, metadata=metadata)
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    write_latent(Latent(torch.randn(1, 4, 2, 2)), tmp_path / "a.latent")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.latent"]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.latent").stat().st_mode & 0o777 == 0o666 & ~umask  # not the 0600 of a temp file


# --- ComfyUI interop -----------------------------------------------------------------------------------


@pytest.mark.parametrize("with_metadata", [True, False], ids=["metadata", "disable-metadata"])
def test_reads_comfyui_savelatent_files(tmp_path, with_metadata):
    samples = torch.randn(1, 4, 8, 8)
    prompt = {"3": {"class_type": "KSampler", "inputs": {"seed": 5}}} if with_metadata else None
    workflow = {"nodes": [{"id": 3}]} if with_metadata else None
    path = tmp_path / "ComfyUI_00001_.latent"
    comfy_save_latent(samples, path, prompt=prompt, workflow=workflow)
    info = open_latent(path)
    assert info.container == "latent" and info.writer == "ComfyUI SaveLatent"
    assert info.latent.space == "raw" and info.latent.format is None
    assert torch.equal(info.latent.tensor, samples)
    if with_metadata:
        assert json.loads(info.metadata["prompt"]) == prompt and json.loads(info.metadata["workflow"]) == workflow
    else:
        assert info.metadata == {}


def test_reads_comfyui_video_latents(tmp_path):
    samples = torch.randn(1, 16, 3, 4, 4)
    comfy_save_latent(samples, tmp_path / "v.latent", prompt={}, workflow=None)
    lat = read_latent(tmp_path / "v.latent", format="wan21")
    assert lat.layout == "NCTHW" and lat.space == "raw" and lat.format_name == "wan21"


@pytest.mark.parametrize(
    ("shape", "space", "families"),
    [
        ((1, 4, 8, 8), "raw", "sd1, sdxl"),
        ((1, 16, 8, 8), "raw", "sd3, flux1"),
        ((1, 128, 8, 8), "model", "flux2"),  # ComfyUI's FLUX.2 LATENT is packed and normalised
        ((1, 128, 3, 4, 4), "model", "ltxv"),  # as is LTX-Video's
        ((1, 16, 1, 8, 8), "raw", "wan21"),  # Qwen-Image in ComfyUI: a one-frame Wan 2.1 latent
        ((1, 7, 8, 8), "unknown", "no registered family"),
    ],
)
def test_comfyui_space_follows_the_families_with_that_channel_count(tmp_path, shape, space, families):
    comfy_save_latent(torch.randn(shape), tmp_path / "x.latent", prompt={}, workflow=None)
    info = open_latent(tmp_path / "x.latent")
    assert info.latent.space == space and info.latent.format is None
    assert any(families in note for note in info.notes), info.notes
    if space == "model":  # naming the family still gives its convention
        assert read_latent(tmp_path / "x.latent", format=families).space == "model"


def test_legacy_comfyui_file_reads_as_sd1_model_space(tmp_path):
    raw = torch.randn(1, 4, 8, 8) * 5
    path = tmp_path / "old.latent"
    safetensors.torch.save_file({"latent_tensor": raw * 0.18215}, str(path))  # no version marker
    info = open_latent(path)
    assert info.writer == "ComfyUI SaveLatent (legacy)"
    assert (info.latent.format_name, info.latent.space) == ("sd1", "model")
    assert any("0.18215" in n for n in info.notes)
    # converting to raw gives what ComfyUI's LoadLatent gives; 2 ulp: 1/0.18215 rounded once in float32 vs once
    # in float64 before the float32 multiply
    torch.testing.assert_close(info.latent.to_space("raw").tensor, comfy_load_latent(path), rtol=2.4e-7, atol=0)


def test_legacy_comfyui_file_with_another_format_is_rescaled_like_loadlatent(tmp_path):
    stored = torch.randn(1, 4, 8, 8)
    path = tmp_path / "old.latent"
    safetensors.torch.save_file({"latent_tensor": stored}, str(path))
    info = open_latent(path, format="sdxl")
    assert (info.latent.format_name, info.latent.space) == ("sdxl", "raw")
    assert torch.equal(info.latent.tensor, comfy_load_latent(path))
    # a space given by the caller wins: the values stay as stored
    kept = read_latent(path, format="sdxl", space="model")
    assert kept.space == "model" and torch.equal(kept.tensor, stored)


@pytest.mark.parametrize("space", ["raw", "model"])
def test_what_we_write_is_what_comfyui_loadlatent_reads(tmp_path, space):
    fmt = get_format("sd1")
    x = torch.randn(1, 4, 8, 8)
    path = write_latent(Latent(x, fmt, space, provenance=PROVENANCE), tmp_path / "ours.latent")
    keys = set(safetensors.torch.load_file(str(path)))
    assert keys == {"latent_tensor", "latent_format_version_0"}  # exactly what LoadLatent reads
    raw = x if space == "raw" else model_to_raw(x, fmt)
    assert torch.equal(comfy_load_latent(path), raw)
    with safetensors.safe_open(str(path), "pt") as f:
        assert f.get_tensor("latent_format_version_0").numel() == 0
        meta = f.metadata()
    assert meta["latentbridge.format"] == "sd1" and meta["latentbridge.space"] == "raw"
    assert Provenance.from_dict(json.loads(meta["latentbridge.provenance"])) == PROVENANCE


def test_comfyui_latent_dict_in_a_pt_file(tmp_path):
    samples = torch.randn(2, 4, 4, 4)
    torch.save({"samples": samples, "noise_mask": torch.ones(2, 1, 4, 4), "batch_index": [0, 1]}, tmp_path / "d.pt")
    info = open_latent(tmp_path / "d.pt")
    assert info.key == "samples" and info.writer == "ComfyUI LATENT dict" and info.latent.space == "raw"
    assert info.other == {"batch_index": "[0, 1]"}


# --- kohya sd-scripts caches ---------------------------------------------------------------------------


def kohya_save(path: Path, latents: torch.Tensor, *, flipped: torch.Tensor | None = None, suffix: str = "") -> None:
    """What sd-scripts' ``save_latents_to_disk`` writes (library/strategy_base.py): float32 C×H×W arrays, the
    original image size and crop box, an optional flipped copy and alpha mask; keys carry ``_<H>x<W>`` (latent
    cells) for multi-resolution caches; an existing file is updated."""
    kwargs = dict(np.load(path)) if path.exists() else {}
    kwargs["latents" + suffix] = latents.float().numpy()
    kwargs["original_size" + suffix] = np.array([1024, 768])
    kwargs["crop_ltrb" + suffix] = np.array([0, 8, 1024, 760])
    if flipped is not None:
        kwargs["latents_flipped" + suffix] = flipped.float().numpy()
        kwargs["alpha_mask" + suffix] = np.ones(latents.shape[1:], np.float32)
    np.savez(path, **kwargs)


def test_reads_kohya_cache(tmp_path):
    lat, flipped = torch.randn(4, 12, 16), torch.randn(4, 12, 16)
    path = tmp_path / "img_1024x0768_sdxl.npz"
    kohya_save(path, lat, flipped=flipped)
    assert sniff(path) == "kohya-npz" and classify(path) == "latent"
    info = open_latent(path)
    assert info.key == "latents" and info.latent.layout == "CHW" and info.latent.space == "unknown"
    assert torch.equal(info.latent.tensor, lat)
    extra = dict(info.latent.provenance.extra)
    assert json.loads(extra["kohya.original_size"]) == [1024, 768]
    assert json.loads(extra["kohya.crop_ltrb"]) == [0, 8, 1024, 760]
    assert any("latents_flipped" in n for n in info.notes) and any("alpha_mask" in n for n in info.notes)
    assert torch.equal(read_latent(path, key="latents_flipped").tensor, flipped)


@pytest.mark.parametrize("fmt", sorted(KOHYA_SPACE))
def test_kohya_space_follows_the_family(tmp_path, fmt):
    path = tmp_path / "c.npz"
    channels = get_format(fmt).channels
    kohya_save(path, torch.randn(channels, 4, 4))
    assert read_latent(path, format=fmt).space == KOHYA_SPACE[fmt]
    assert read_latent(path, format=fmt, space="model").space == "model"  # the caller wins
    if get_format(fmt).dims == 3:  # Anima's Wan 2.1 cache: one frame without its time axis
        assert read_latent(path, format=fmt).canonical().shape == (1, channels, 1, 4, 4)


def test_kohya_multi_resolution_cache_asks_which(tmp_path):
    path = tmp_path / "multi.npz"
    kohya_save(path, torch.randn(16, 8, 8), suffix="_8x8")
    kohya_save(path, torch.randn(16, 4, 6), suffix="_4x6")
    with pytest.raises(
        FileFormatError,
        match=r"holds 2 resolutions: latents_4x6 float32\[16, 4, 6\], latents_8x8 .*"
        r"key='NAME' \(--key NAME\)",
    ):
        read_latent(path)
    lat = read_latent(path, key="latents_4x6", format="flux1")
    assert lat.shape == (16, 4, 6) and lat.space == "model"


# --- other containers, keys ------------------------------------------------------------------------------


def test_pt_holding_a_bare_tensor_or_a_list(tmp_path):
    x = torch.randn(1, 4, 4, 4)
    torch.save(x, tmp_path / "t.pth")
    assert torch.equal(read_latent(tmp_path / "t.pth").tensor, x)
    torch.save([x], tmp_path / "l.pth")
    assert open_latent(tmp_path / "l.pth").key == "0"
    torch.save(x, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert sniff(tmp_path / "legacy.pt") == "pt" and torch.equal(read_latent(tmp_path / "legacy.pt").tensor, x)


def test_several_candidate_tensors_need_a_key(tmp_path):
    path = tmp_path / "two.safetensors"
    a, b = torch.randn(1, 4, 4, 4), torch.randn(1, 16, 2, 2)
    safetensors.torch.save_file({"a": a, "b": b, "ids": torch.arange(3)}, str(path))
    with pytest.raises(
        FileFormatError,
        match=r"2 arrays could be the latent: a float32\[1, 4, 4, 4\], b float32"
        r"\[1, 16, 2, 2\]; say which with key='NAME' \(--key NAME",
    ):
        read_latent(path)
    assert torch.equal(read_latent(path, key="b").tensor, b)
    with pytest.raises(FileFormatError, match=r"no array named 'c'; the file holds .*ids int64\[3\]"):
        read_latent(path, key="c")


def test_no_candidate_tensor(tmp_path):
    path = tmp_path / "emb.safetensors"
    safetensors.torch.save_file({"emb_params": torch.randn(8, 768)}, str(path))
    with pytest.raises(FileFormatError, match=r"no array here could be a latent .* emb_params float32\[8, 768\]"):
        read_latent(path)


def test_content_wins_over_the_name(tmp_path):
    x = torch.randn(1, 4, 2, 2)
    path = write_latent(Latent(x, space="raw"), tmp_path / "looks_like.npz", container="pt")
    assert sniff(path) == "pt" and torch.equal(read_latent(path).tensor, x)
    path = write_latent(Latent(x, space="raw"), tmp_path / "looks_like.pt", container="npz")
    assert sniff(path) == "npz" and torch.equal(read_latent(path).tensor, x)


def _with_header_length(data: bytes, want: int) -> bytes | None:
    """``data`` (a safetensors file) with its JSON header padded by trailing spaces to ``want`` bytes (valid JSON)."""
    size = struct.unpack("<Q", data[:8])[0]
    header = data[8 : 8 + size].rstrip(b" ")
    if len(header) > want:
        return None
    return struct.pack("<Q", want) + header + b" " * (want - len(header)) + data[8 + size :]


@pytest.mark.parametrize("protocol_byte", [2, 3, 4, 5])
def test_safetensors_whose_header_length_starts_like_a_pickle(tmp_path, protocol_byte):
    # A header of 0x?380 bytes starts the file with 80 03, the pickle protocol-3 opcode; such a file (a real
    # transfer output hit this) must still read as safetensors, not be refused as an unsafe pickle.
    x = torch.randn(1, 4, 2, 2)
    want = 0x80 | protocol_byte << 8
    path = tmp_path / "odd.safetensors"
    path.write_bytes(_with_header_length(safetensors.torch.save({"latent": x}), want))
    assert path.read_bytes()[:2] == bytes([0x80, protocol_byte])
    assert sniff(path) == "safetensors"
    assert torch.equal(read_latent(path, format="sd1", space="raw").tensor, x)


def test_caller_choices_fill_in_and_conflict_with_the_record(tmp_path):
    x = torch.randn(1, 4, 2, 2)
    unknown = write_latent(Latent(x), tmp_path / "u.latent")
    filled = read_latent(unknown, format="sdxl", space="raw")
    assert (filled.format_name, filled.space) == ("sdxl", "raw")
    recorded = write_latent(Latent(x, get_format("sd1"), "raw"), tmp_path / "r.latent")
    with pytest.raises(IncompatibleError, match=r"records format 'sd1' but 'sdxl' was asked for.*--override"):
        read_latent(recorded, format="sdxl")
    with pytest.raises(IncompatibleError, match=r"records space 'raw' but 'model' was asked for"):
        read_latent(recorded, space="model")
    info = open_latent(recorded, format="sdxl", override=True)
    assert info.latent.format_name == "sdxl" and any("override" in n for n in info.notes)


def test_layout_option(tmp_path):
    x = torch.randn(1, 8, 8, 4)
    path = tmp_path / "nhwc.safetensors"
    safetensors.torch.save_file({"latent": x}, str(path))
    lat = read_latent(path, layout="NHWC", format="sd1", space="raw")
    assert lat.canonical().shape == (1, 4, 8, 8)
    with pytest.raises(FileFormatError, match=r"does not fit layout 'NCTHW'"):
        read_latent(path, layout="NCTHW")


# --- errors: impostors, damage, unsafe pickles, refusals -------------------------------------------------


def test_html_page_saved_as_safetensors(tmp_path):
    path = tmp_path / "vae.safetensors"
    path.write_text("<!DOCTYPE html>\n<html><head><title>404</title></head><body>Not found</body></html>")
    with pytest.raises(
        FileFormatError,
        match=r"vae\.safetensors: this is an HTML page, probably a download error "
        r"page .*: re-download the file",
    ):
        read_latent(path)


def test_git_lfs_pointer(tmp_path):
    path = tmp_path / "x.latent"
    path.write_text(
        "version https://git-lfs.github.com/spec/v1\n"
        "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n"
    )
    with pytest.raises(
        FileFormatError,
        match=r"git-lfs pointer file \(oid sha256:4d7a.*, 12345 bytes\).*"
        r"run `git lfs pull`",
    ):
        read_latent(path)


def test_json_error_response(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_text('{"error": "Repository not found"}')
    with pytest.raises(FileFormatError, match=r"this is a JSON text file .*Repository not found.*re-download"):
        sniff(path)


def test_empty_file(tmp_path):
    (tmp_path / "e.latent").write_bytes(b"")
    with pytest.raises(FileFormatError, match=r"e\.latent: the file is empty \(0 bytes\): re-download or re-save"):
        read_latent(tmp_path / "e.latent")


def test_truncated_safetensors_header(tmp_path):
    good = write_latent(Latent(torch.randn(1, 4, 4, 4)), tmp_path / "good.latent").read_bytes()
    (tmp_path / "cut.latent").write_bytes(good[:100])
    with pytest.raises(
        FileFormatError,
        match=r"truncated safetensors header: it declares \d+ bytes but the file "
        r"holds only 92 .*re-download",
    ):
        read_latent(tmp_path / "cut.latent")


def test_truncated_safetensors_data(tmp_path):
    good = write_latent(Latent(torch.randn(1, 4, 4, 4)), tmp_path / "good.latent").read_bytes()
    (tmp_path / "cut.latent").write_bytes(good[:-10])
    with pytest.raises(
        FileFormatError,
        match=r"truncated safetensors file: the tensors need 256 bytes of data but "
        r"only 246 are present",
    ):
        read_latent(tmp_path / "cut.latent")


def test_corrupt_safetensors_header(tmp_path):
    good = bytearray(write_latent(Latent(torch.randn(1, 4, 4, 4)), tmp_path / "good.latent").read_bytes())
    good[20] = ord("\\")
    (tmp_path / "bad.latent").write_bytes(bytes(good))
    with pytest.raises(FileFormatError, match=r"corrupt safetensors header \(not valid JSON"):
        read_latent(tmp_path / "bad.latent")


def test_zip_that_is_not_npz(tmp_path):
    path = tmp_path / "latents.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(FileFormatError, match=r"a zip archive that is neither an \.npz .* it holds readme\.txt"):
        read_latent(path)


def test_npz_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, latent=np.zeros((1, 4, 2, 2), np.float32), names=np.array([{"a": 1}], dtype=object))
    with pytest.raises(FileFormatError, match=r"array 'names' \[1\] object holds Python objects .* never unpickles"):
        read_latent(path, key="names")


class _Payload:
    """A pickle that would create a file when unpickled."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_pickle_with_code_is_refused_and_nothing_runs(tmp_path, how):
    target = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    if how == "torch.save":
        torch.save({"latent": torch.zeros(1, 4, 2, 2), "x": _Payload(target)}, path)
    else:
        path.write_bytes(pickle.dumps(_Payload(target), protocol=2))
    for call in (read_latent, classify):
        with pytest.raises(
            FileFormatError,
            match=r"refused to load this pickle: it references posix\.system, which unpickling would import and "
            r"call.*nothing from the file was executed",
        ):
            call(path)
    assert not target.exists()


def test_truncated_pt_file(tmp_path):
    torch.save(torch.randn(1, 4, 8, 8), tmp_path / "t.pt")
    data = (tmp_path / "t.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match=r"damaged or truncated zip archive.*re-download"):
        read_latent(tmp_path / "cut.pt")


def test_unrecognised_binary(tmp_path):
    (tmp_path / "x.latent").write_bytes(bytes(range(200, 256)) * 4)
    with pytest.raises(FileFormatError, match=r"unrecognised content \(first bytes c8 c9"):
        sniff(tmp_path / "x.latent")


def test_no_overwrite_without_permission(tmp_path):
    path = write_latent(Latent(torch.zeros(1, 4, 2, 2)), tmp_path / "a.latent")
    before = path.read_bytes()
    for container in CONTAINERS:
        with pytest.raises(FileExistsError, match=r"a\.latent already exists: pass overwrite=True"):
            write_latent(Latent(torch.ones(1, 4, 2, 2)), path, container=container)
    assert path.read_bytes() == before
    write_latent(Latent(torch.ones(1, 4, 2, 2)), path, overwrite=True)
    assert torch.equal(read_latent(path).tensor, torch.ones(1, 4, 2, 2))


def test_npy_sidecar_counts_as_existing(tmp_path):
    (tmp_path / "a.npy.latentbridge.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"a\.npy\.latentbridge\.json already exists"):
        write_latent(Latent(torch.zeros(1, 4, 2, 2)), tmp_path / "a.npy", container="npy")
    assert not (tmp_path / "a.npy").exists()


def test_model_space_of_unknown_format_cannot_become_a_comfyui_file(tmp_path):
    with pytest.raises(IncompatibleError, match=r"model-space latent of unknown format to a \.latent file.*--format"):
        write_latent(Latent(torch.zeros(1, 4, 2, 2), space="model"), tmp_path / "m.latent")
    with pytest.raises(IncompatibleError, match=r"raw-space flux2 latent to model space.*stats=NormStats"):
        write_latent(Latent(torch.zeros(1, 32, 4, 4), get_format("flux2"), "raw"), tmp_path / "f.latent")
    assert list(tmp_path.iterdir()) == []


def test_unknown_container_name(tmp_path):
    with pytest.raises(ValueError, match=r"unknown container 'safetensor'.*Did you mean 'safetensors'"):
        write_latent(Latent(torch.zeros(1, 4, 2, 2)), tmp_path / "x", container="safetensor")


def test_stale_npy_sidecar(tmp_path):
    path = write_latent(Latent(torch.zeros(1, 4, 2, 2)), tmp_path / "a.npy", container="npy")
    np.save(path, np.zeros((1, 4, 3, 3), np.float32))  # replaced by another program
    with pytest.raises(
        FileFormatError,
        match=r"sidecar a\.npy\.latentbridge\.json describes shape \[1, 4, 2, 2\] "
        r"but the array is \[1, 4, 3, 3\].*delete the stale sidecar",
    ):
        read_latent(path)


def test_edited_bf16_array_is_detected(tmp_path):
    path = write_latent(Latent(torch.randn(1, 4, 2, 2).bfloat16()), tmp_path / "a.npy", container="npy")
    np.save(path, np.full((1, 4, 2, 2), 0.1, np.float32))  # 0.1 is not a bfloat16 value
    with pytest.raises(FileFormatError, match=r"holds bfloat16 values .* but some are not"):
        read_latent(path)


# --- sniff and classify --------------------------------------------------------------------------------


@pytest.mark.parametrize("container", CONTAINERS)
def test_sniff_names_each_container(tmp_path, container):
    path = write_latent(Latent(torch.zeros(1, 4, 2, 2)), tmp_path / "no_extension", container=container)
    assert sniff(path) == container
    assert classify(path) == "latent"


def test_classify_real_weight_files(shared_weights):
    for rel in (
        "taef2/taef2_encoder.pth",
        "taef2/taef2_decoder.pth",
        "vaeapprox/vaeapprox-sd1.pt",
        "vaeapprox/vaeapprox-sd3.pt",
        "vaelight-sd1/VAEencoder.onnx",
        "vaelight-sd1/VAEpreview.onnx",
    ):
        assert classify(shared_weights / rel) == "weights", rel
    assert sniff(shared_weights / "vaelight-sd1/VAEencoder.onnx") == "onnx"
    with pytest.raises(FileFormatError, match=r"this is an ONNX network, not a latent"):
        read_latent(shared_weights / "vaelight-sd1/VAEencoder.onnx")


def test_classify_safetensors_state_dicts(tmp_path):
    conv = torch.zeros(4, 4, 3, 3)
    for keys in (["decoder.conv_in.weight"], ["first_stage_model.encoder.conv_in.bias"], ["conv1.weight"]):
        safetensors.torch.save_file({k: conv for k in keys}, str(tmp_path / "w.safetensors"))
        assert classify(tmp_path / "w.safetensors") == "weights", keys
    many = {f"t{i}": torch.zeros(1, 4, 2, 2) for i in range(17)}  # more tensors than any latent file holds
    safetensors.torch.save_file(many, str(tmp_path / "many.safetensors"))
    assert classify(tmp_path / "many.safetensors") == "weights"
    safetensors.torch.save_file({"latent": torch.zeros(1, 4, 2, 2)}, str(tmp_path / "l.safetensors"))
    assert classify(tmp_path / "l.safetensors") == "latent"


# --- statistics and real data ----------------------------------------------------------------------------


def test_latent_stats_per_channel():
    x = torch.stack([torch.full((3, 3), 2.0), torch.arange(9.0).reshape(3, 3)])[None]  # [1, 2, 3, 3]
    x[0, 1, 0, 0] = float("nan")
    x[0, 1, 0, 1] = float("inf")
    stats = latent_stats(Latent(x, layout="NCHW"))
    c0, c1 = stats["channels"]
    assert (c0["mean"], c0["std"], c0["min"], c0["max"], c0["nan"], c0["inf"]) == (2.0, 0.0, 2.0, 2.0, 0, 0)
    finite = np.arange(2.0, 9.0)
    assert (c1["nan"], c1["inf"], c1["count"]) == (1, 1, 9)
    assert c1["mean"] == pytest.approx(finite.mean()) and c1["std"] == pytest.approx(finite.std())  # float64 sums
    assert (stats["overall"]["nan"], stats["overall"]["min"], stats["overall"]["max"]) == (1, 2.0, 8.0)
    nhwc = latent_stats(Latent(x.permute(0, 2, 3, 1), layout="NHWC"))
    assert nhwc["channels"] == stats["channels"]
    all_nan = latent_stats(Latent(torch.full((1, 1, 2, 2), float("nan"))))
    assert all_nan["overall"]["mean"] is None and all_nan["overall"]["nan"] == 4


@pytest.fixture(scope="module")
def real_sd1_latent(shared_weights) -> torch.Tensor:
    """A real raw SD1 latent: the astronaut photo (256²) through the VAElight SD1 encoder (ONNX)."""
    ort = pytest.importorskip("onnxruntime")
    from latentbridge.photos import photo_tensor

    encoder = shared_weights / "vaelight-sd1" / "VAEencoder.onnx"
    session = ort.InferenceSession(str(encoder), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"input": photo_tensor("astronaut", 256).numpy()})[0])


def test_real_latent_through_every_container_and_comfyui(tmp_path, real_sd1_latent):
    lat = Latent(real_sd1_latent, get_format("sd1"), "raw", provenance=Provenance(source_image="astronaut"))
    for container in CONTAINERS:
        back = read_latent(write_latent(lat, tmp_path / container, container=container))
        assert torch.equal(back.tensor, real_sd1_latent) and back.format_name == "sd1"
    std = latent_stats(lat)["overall"]["std"]
    assert 3.0 < std < 9.0  # raw SD1 latents spread with std ≈ 5 (FACTS.md); model space would be ≈ 1
    # the same latent as an old ComfyUI saved it (SD1-scaled, no marker) reads as model space with std ≈ 1
    safetensors.torch.save_file({"latent_tensor": real_sd1_latent * 0.18215}, str(tmp_path / "old.latent"))
    old = read_latent(tmp_path / "old.latent")
    assert 0.5 < latent_stats(old)["overall"]["std"] < 1.7  # 0.18215 × (3 … 9)
    # relative 1e-6: two float32 roundings (×0.18215 then ×1/0.18215)
    torch.testing.assert_close(old.to_space("raw").tensor, real_sd1_latent, rtol=1e-6, atol=1e-6)


def test_flux2_is_written_in_comfyui_space_packed_and_normalised(tmp_path):
    """ComfyUI's FLUX.2 LATENT is 128 ch / 16× (its VAE packs and normalises): raw latents are converted."""
    from latentbridge.formats import NormStats, raw_to_model

    fmt = get_format("flux2")
    g = torch.Generator().manual_seed(3)
    stats = NormStats.from_running(torch.randn(128, generator=g), torch.rand(128, generator=g) + 0.5, 1e-4, "test")
    raw = torch.randn(1, 32, 8, 8, generator=g)
    path = write_latent(Latent(raw, fmt, "raw", stats=stats), tmp_path / "f2.latent")
    back = read_latent(path)
    assert (back.format_name, back.space, back.shape) == ("flux2", "model", (1, 128, 4, 4))
    # float32 (x - mean) / std: a few ulp of values with |x| ≲ 5
    torch.testing.assert_close(back.tensor, raw_to_model(raw, fmt, stats), rtol=1e-5, atol=1e-5)
    # a model-space FLUX.2 latent (what TAEF2 encodes) needs no statistics to be written
    model = Latent(back.tensor, fmt, "model")
    again = read_latent(write_latent(model, tmp_path / "m.latent"))
    assert torch.equal(again.tensor, back.tensor) and again.space == "model"


def test_comfyui_flux2_latent_reads_in_comfyui_space(tmp_path):
    """A ComfyUI-written FLUX.2 .latent is 128 ch / 16×: with --format flux2 it is model space, not raw."""
    from safetensors.torch import save_file

    path = tmp_path / "flux2.latent"
    save_file({"latent_tensor": torch.randn(1, 128, 4, 4), "latent_format_version_0": torch.tensor([])}, str(path))
    lat = read_latent(path, format="flux2")
    assert (lat.format_name, lat.space, lat.shape) == ("flux2", "model", (1, 128, 4, 4))


# --- real-world files (found in a review with files written the way real tools write them) --------------------


# every multiple of 8 up to 2 kB, and 0x?280..0x?580 (first bytes 80 02..80 05, the pickle opcodes) up to 62 kB
HEADER_LENGTHS = sorted(
    {*range(0x100, 0x800, 8), *(hi << 12 | lo for hi in range(16) for lo in (0x280, 0x380, 0x480, 0x580))}
)


def test_every_safetensors_header_length_sniffs_as_safetensors(tmp_path):
    """A ComfyUI SaveLatent file with its header padded to many lengths: always a ComfyUI latent, never a pickle."""
    from latentbridge.weights import read_header

    samples = torch.randn(2, 4, 3, 3)
    data = safetensors.torch.save(
        {"latent_tensor": samples, "latent_format_version_0": torch.tensor([])}, metadata={"prompt": "{}"}
    )
    path = tmp_path / "ComfyUI_00001_.latent"
    checked = 0
    for want in HEADER_LENGTHS:
        padded = _with_header_length(data, want)
        if padded is None:  # shorter than the header itself
            continue
        path.write_bytes(padded)
        assert (sniff(path), classify(path), read_header(path).container) == ("latent", "latent", "safetensors"), want
        assert torch.equal(read_latent(path).tensor, samples), hex(want)
        checked += 1
    assert checked > 200


def test_pytorch_file_named_safetensors_reads_by_content(tmp_path):
    """torch.load hands any path ending in .safetensors to safetensors.load_file; content must decide here."""
    x = torch.randn(1, 4, 3, 3)
    path = tmp_path / "renamed.safetensors"
    torch.save({"latents": x}, path)
    assert (sniff(path), classify(path)) == ("pt", "latent")
    assert torch.equal(read_latent(path).tensor, x)


def test_truncated_safetensors_whose_length_looks_like_a_pickle(tmp_path):
    data = _with_header_length(safetensors.torch.save({"latent": torch.zeros(1, 4, 2, 2)}), 0x380)
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[:300])  # cut inside the header; the file starts with 80 03
    with pytest.raises(FileFormatError, match=r"truncated safetensors header: it declares 896 bytes"):
        read_latent(path)


def test_weight_file_given_as_a_latent_is_named_as_such(tmp_path):
    """Swapped arguments (`decode vae.safetensors --vae x.latent`) get one line, not a list of 180 tensors."""
    state = {f"decoder.up.{i}.block.0.conv1.{p}": torch.zeros(4, 4, 3, 3) for i in range(4) for p in ("weight", "bias")}
    safetensors.torch.save_file(state, str(tmp_path / "vae.safetensors"))
    torch.save(
        {"state_dict": {f"first_stage_model.{k}": v for k, v in state.items()}, "global_step": 1}, tmp_path / "m.ckpt"
    )
    for name in ("vae.safetensors", "m.ckpt"):
        with pytest.raises(
            FileFormatError,
            match=r"this is a network's weight file \(8 tensors such as .*decoder\.up\.0\.block\.0\.conv1\.weight.*\), "
            r"not a latent: pass it as the VAE",
        ) as err:
            read_latent(tmp_path / name)
        assert len(str(err.value)) < 500
    # naming the array still reads it, and a latent nested in a dict is found under its dotted name
    assert read_latent(
        tmp_path / "m.ckpt", key="state_dict.first_stage_model.decoder.up.0.block.0.conv1.weight"
    ).shape == (4, 4, 3, 3)
    x = torch.randn(1, 4, 2, 2)
    torch.save({"model": {"latent": x}, "step": 3}, tmp_path / "nested.pt")
    info = open_latent(tmp_path / "nested.pt")
    assert info.key == "model.latent" and torch.equal(info.latent.tensor, x) and info.other == {"step": "3"}


def test_ambiguity_error_lists_a_dozen_arrays_and_counts_the_rest(tmp_path):
    many = {f"z{i:02d}": torch.zeros(1, 4, 2, 2) for i in range(14)}
    safetensors.torch.save_file(many, str(tmp_path / "many.safetensors"))
    with pytest.raises(
        FileFormatError,
        match=r"14 arrays could be the latent: z00 .* z11 float32\[1, 4, 2, 2\], … \(14 arrays in all\); say which",
    ):
        read_latent(tmp_path / "many.safetensors")


@pytest.mark.parametrize(
    ("name", "given", "want"),
    [
        ("out.npy", None, "npy"),
        ("OUT.NPZ", None, "npz"),
        ("out.pth", None, "pt"),
        ("out.safetensors", None, "safetensors"),
        ("out.safetensors", "latent", "latent"),  # a ComfyUI .latent is a safetensors file
        ("ComfyUI_00001_.latent", None, "latent"),
        ("no_suffix", None, "latent"),
        ("out.bin", "npz", "npz"),
    ],
)
def test_container_for_follows_the_suffix(name, given, want):
    from latentbridge.files import container_for

    assert container_for(name, given) == want


def test_container_for_refuses_a_container_its_name_contradicts():
    from latentbridge.files import container_for

    with pytest.raises(
        ValueError,
        match=r"x\.npy is named like a \.npy file, but container 'safetensors' .* name it x\.safetensors, "
        r"or choose container 'npy' \(--container npy\)",
    ):
        container_for("x.npy", "safetensors")
    with pytest.raises(ValueError, match=r"unknown container 'npx'"):
        container_for("x.npy", "npx")


def _musubi_save(path: Path, tensors: dict, architecture: str) -> Path:
    """kohya-ss/musubi-tuner's save_latent_cache_common: safetensors with its four metadata strings."""
    meta = {"architecture": architecture, "width": "64", "height": "48", "format_version": "1.0.1", "frame_count": "9"}
    safetensors.torch.save_file(tensors, str(path), metadata=meta)
    return path


def test_reads_musubi_tuner_caches(tmp_path):
    """One C×F×H×W item per file: read as CTHW (it was NCHW: 16 "batch items" of 3 channels), the main latent
    chosen over the I2V image latent, and the space of the architectures whose caching code was read."""
    z = torch.randn(16, 3, 6, 8).bfloat16()
    wan = _musubi_save(
        tmp_path / "0001_0048x0064_wan.safetensors",
        {"latents_3x6x8_bf16": z, "clip_bf16": torch.randn(257, 8).bfloat16(), "latents_image_3x6x8_bf16": z * 0},
        "wan",
    )
    info = open_latent(wan)
    assert (info.writer, info.key, info.latent.layout) == ("musubi-tuner latent cache", "latents_3x6x8_bf16", "CTHW")
    assert (info.latent.format_name, info.latent.space) == ("wan21", "model") and torch.equal(info.latent.tensor, z)
    assert dict(info.latent.provenance.extra)["musubi.architecture"] == "wan"
    assert any("also holds latents_image_3x6x8_bf16" in n for n in info.notes)
    assert open_latent(wan, key="latents_image_3x6x8_bf16").latent.layout == "CTHW"
    hv = _musubi_save(tmp_path / "hv.safetensors", {"latents_3x6x8_bf16": z}, "hunyuan_video")
    assert (read_latent(hv).format_name, read_latent(hv).space) == ("hunyuan_video", "raw")
    qi = _musubi_save(tmp_path / "qi.safetensors", {"latents_1x6x8_bf16": z[:, :1].contiguous()}, "qwen_image")
    lat = read_latent(qi)  # qwen_image_cache_latents.py: the Wan 2.1 VAE's normalised one-frame latent
    assert (lat.layout, lat.format_name, lat.space) == ("CTHW", "wan21", "model")
    f2 = torch.randn(128, 3, 4).bfloat16()
    flux2 = _musubi_save(tmp_path / "f2.safetensors", {"latents_3x4_bf16": f2}, "flux_2_klein_4b")
    lat = read_latent(flux2)  # flux_2_cache_latents.py: packed and BatchNorm-normalised
    assert (lat.layout, lat.format_name, lat.space) == ("CHW", "flux2", "model")
    other = _musubi_save(tmp_path / "o.safetensors", {"latents_3x4_bf16": f2}, "some_future_model")
    assert (read_latent(other).format_name, read_latent(other).space) == ("", "unknown")


@pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")  # writing one (torch 2.13 deprecates it)
def test_torchscript_archive_is_refused_by_name(tmp_path):
    """torch.jit.save files are zip archives too; torch.load(weights_only=True) calls them damaged (and warns)."""
    path = tmp_path / "taesd_decoder.pt"
    torch.jit.save(torch.jit.script(torch.nn.Conv2d(4, 3, 1)), str(path))
    for fn in (sniff, classify, read_latent):
        with pytest.raises(FileFormatError, match=r"this is a TorchScript archive \(torch\.jit\.save\): a compiled"):
            fn(path)


@pytest.mark.parametrize("protocol", [4, 5])
def test_pickle_protocol_4_is_named_not_called_unsafe(tmp_path, protocol):
    """torch's weights_only loader reads protocols 2 and 3 only; a protocol-4 file is not a code-running pickle."""
    path = tmp_path / "latents.pt"
    torch.save({"latents": torch.zeros(1, 4, 2, 2)}, path, pickle_protocol=protocol)
    with pytest.raises(
        FileFormatError, match=r"saved with pickle protocol 4 or 5 .*re-save it with torch\.save's default"
    ):
        read_latent(path)


# --- diffusers token sequences (FluxPipeline / Flux2Pipeline output_type="latent") ----------------------


def test_token_sequence_needs_its_grid_and_then_reads_as_model_space(tmp_path):
    model = torch.randn(1, 16, 16, 32)  # a 128×256-px FLUX.1 model-space latent
    tokens = model.view(1, 16, 8, 2, 16, 2).permute(0, 2, 4, 1, 3, 5).reshape(1, 128, 64)  # diffusers' packing
    path = tmp_path / "flux_out.pt"
    torch.save(tokens, path)
    with pytest.raises(
        FileFormatError, match=r"128 tokens × 64 features .* flux1 .* pass --grid .* 8x16 \(128 px high, 256 wide\)"
    ):
        read_latent(path)  # not misread as a 1-channel 128×64 image
    with pytest.raises(
        FileFormatError, match=r"or wan21 \(one-frame tokens, as Qwen-Image's\).* --format flux1\|wan21"
    ):
        read_latent(path, grid="8x16")  # FLUX.1 and Qwen-Image tokens have the same shape
    lat = read_latent(path, grid="8x16", format="flux1")
    assert lat.format_name == "flux1" and lat.space == "model" and lat.layout == "NCHW"
    assert torch.equal(lat.tensor, model)
    qwen = read_latent(path, grid=(8, 16), format="wan21")  # the same numbers as a Qwen-Image latent: one frame
    assert qwen.layout == "NCTHW" and torch.equal(qwen.tensor, model.unsqueeze(2)) and qwen.space == "model"
    with pytest.raises(FileFormatError, match=r"grid 5x5 holds 25 tokens but the sequence has 128"):
        read_latent(path, grid="5x5", format="flux1")
    with pytest.raises(FileFormatError, match="in model space; drop --space raw"):
        read_latent(path, grid="8x16", space="raw", format="flux1")
    with pytest.raises(FileFormatError, match=r"ROWSxCOLUMNS, e\.g\. 64x64"):
        read_latent(path, grid="four by six", format="flux1")
    spatial = tmp_path / "spatial.pt"
    torch.save(model, spatial)
    with pytest.raises(FileFormatError, match=r"shape \[1, 16, 16, 32\]; drop --grid for a spatial latent"):
        read_latent(spatial, grid="8x16")


def test_a_batch_of_four_token_sequences_is_ambiguous_and_says_so(tmp_path):
    """[4, L, 128] is also a valid CHW shape (4 channels): read as stored, with a note naming --grid."""
    path = tmp_path / "batch.pt"
    torch.save(torch.randn(4, 256, 128), path)
    info = open_latent(path)
    assert info.latent.layout == "CHW" and any("--grid" in n for n in info.notes)
    lat = read_latent(path, grid="8x32")
    assert lat.format_name == "flux2" and lat.shape == (4, 128, 8, 32)
    single = tmp_path / "one.pt"
    torch.save(torch.randn(1, 256, 128), single)
    with pytest.raises(FileFormatError, match=r"of flux2 .* \(a ltxv clip's tokens \[N, T·H·W, 128\] also need"):
        read_latent(single)  # 128 features: FLUX.2 tokens, or an LTX-Video clip's (not read: frames unknown)


def test_token_sequences_in_batches_and_small_grids(tmp_path):
    """A batch of 4 sequences is no 4-channel 1536×64 strip; a 128-px FLUX.2 image (64 tokens) reads with --grid."""
    batch = tmp_path / "b4.pt"
    torch.save(torch.randn(4, 1536, 64), batch)
    with pytest.raises(FileFormatError, match="1536 tokens × 64 features"):
        read_latent(batch)
    assert read_latent(batch, grid="32x48", format="flux1").shape == (4, 16, 64, 96)
    small = tmp_path / "small.pt"
    torch.save(torch.randn(1, 64, 128), small)
    assert read_latent(small, grid="8x8").shape == (1, 128, 8, 8)  # too few tokens to be guessed, fine when asked
    with pytest.raises(FileFormatError, match=r"--format flux1 has 64 features, but this token sequence has 128"):
        read_latent(small, grid="8x8", format="flux1")


def test_a_chw_latent_of_an_unregistered_vae_is_not_taken_for_tokens(tmp_path):
    """[8, 64, 64]: 8 channels is no registered format's, but 64 rows are too few to be 64-feature tokens."""
    path = tmp_path / "custom.pt"
    torch.save(torch.randn(8, 64, 64), path)
    assert read_latent(path).layout == "CHW"
    tall = tmp_path / "tall.pt"
    torch.save(torch.randn(8, 256, 64), tall)  # could be either: refused, naming both readings
    with pytest.raises(
        FileFormatError, match=r"pass --grid .*; if it is a \[C, H, W\] latent instead, say so: --layout CHW"
    ):
        read_latent(tall)
    assert read_latent(tall, layout="CHW").shape == (8, 256, 64)
