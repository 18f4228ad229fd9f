"""latentbridge.images: reading PNG/JPEG/WebP into [-1, 1] tensors, fitting sizes, writing PNGs with provenance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from latentbridge.errors import FileFormatError, LatentBridgeWarning, ShapeError
from latentbridge.images import (
    PNG_KEY,
    Padding,
    fit_size,
    load_image,
    load_images,
    output_paths,
    read_png_metadata,
    save_images,
    to_uint8,
)
from latentbridge.photos import load_photo


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:
    """A real photo, 300×451 (neither side a multiple of 8)."""
    return load_photo("chelsea")


def _save(array: np.ndarray, path, **kw) -> None:
    Image.fromarray(array).save(path, **kw)


def test_png_reads_exactly_in_minus_one_one(tmp_path, chelsea):
    _save(chelsea, tmp_path / "c.png")
    loaded = load_image(tmp_path / "c.png")
    assert loaded.tensor.shape == (1, 3, 300, 451) and loaded.tensor.dtype == torch.float32
    assert loaded.padding.is_zero and loaded.source_size == (300, 451)
    back = np.round((loaded.tensor[0].permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.uint8)
    np.testing.assert_array_equal(back, chelsea)  # lossless file, exact mapping x/127.5 - 1
    assert loaded.tensor.min() >= -1 and loaded.tensor.max() <= 1


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("WEBP", ".webp")])
def test_lossy_formats_read_close_to_the_source(tmp_path, chelsea, fmt, suffix):
    path = tmp_path / f"c{suffix}"
    _save(chelsea, path, format=fmt, quality=95)
    loaded = load_image(path)
    got = (loaded.tensor[0].permute(1, 2, 0).numpy() + 1) * 127.5
    # quality-95 JPEG/WebP of a photo: mean absolute error is a couple of grey levels; 4 leaves room for codecs
    assert np.abs(got - chelsea.astype(np.float32)).mean() < 4.0


def test_rgba_drops_alpha_with_a_warning(tmp_path, chelsea):
    rgba = np.concatenate([chelsea, np.full((*chelsea.shape[:2], 1), 128, np.uint8)], axis=2)
    _save(rgba, tmp_path / "a.png")
    with pytest.warns(LatentBridgeWarning, match=r"a\.png: has an alpha channel \(RGBA\); dropped it"):
        loaded = load_image(tmp_path / "a.png")
    back = np.round((loaded.tensor[0].permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.uint8)
    np.testing.assert_array_equal(back, chelsea)  # colour values kept, not composited


def test_greyscale_and_16_bit_files_become_rgb(tmp_path):
    grey16 = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    loaded = load_image(tmp_path / "g16.png")
    expected = grey16.astype(np.float32) / 65535 * 2 - 1
    # 16-bit precision survives: the error is float32 rounding, far below one 8-bit step (2/255)
    np.testing.assert_allclose(loaded.tensor[0, 1].numpy(), expected, atol=1e-6)
    assert torch.equal(loaded.tensor[0, 0], loaded.tensor[0, 2])


def test_exif_orientation_is_applied(tmp_path):
    image = np.zeros((16, 32, 3), np.uint8)
    image[:, :16] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.fromarray(image).save(tmp_path / "r.jpg", exif=exif, quality=100)
    loaded = load_image(tmp_path / "r.jpg")
    assert loaded.tensor.shape[-2:] == (32, 16)  # displayed upright: portrait
    assert loaded.tensor[0, 0, :8].mean() > 0.9 and loaded.tensor[0, 0, -8:].mean() < -0.9  # white on top


def test_size_error_names_the_nearest_sizes(tmp_path, chelsea):
    _save(chelsea, tmp_path / "c.png")
    with pytest.raises(
        ShapeError,
        match=r"image c\.png is 300×451 but this latent format needs sizes that are multiples of 16; "
        r"the nearest valid sizes are 288×448 and 304×464: resize it, or pass --pad",
    ):
        load_image(tmp_path / "c.png", multiple=16)


def test_pad_reflects_and_is_recorded(tmp_path, chelsea):
    _save(chelsea, tmp_path / "c.png")
    loaded = load_image(tmp_path / "c.png", multiple=16, pad=True)
    assert loaded.tensor.shape[-2:] == (304, 464)
    assert loaded.padding == Padding(top=2, bottom=2, left=6, right=7)
    plain = load_image(tmp_path / "c.png").tensor
    torch.testing.assert_close(loaded.padding.crop(loaded.tensor), plain, rtol=0, atol=0)
    # reflect padding: the first padded row mirrors row 1 of the image (not row 0, not zeros)
    torch.testing.assert_close(loaded.tensor[0, :, 0, 6:-7], plain[0, :, 2], rtol=0, atol=0)
    assert Padding.parse(loaded.padding.to_text()) == loaded.padding


def test_crop_takes_the_centre(tmp_path, chelsea):
    _save(chelsea, tmp_path / "c.png")
    loaded = load_image(tmp_path / "c.png", multiple=16, crop=True)
    assert loaded.tensor.shape[-2:] == (288, 448) and loaded.padding.is_zero
    plain = load_image(tmp_path / "c.png").tensor
    torch.testing.assert_close(loaded.tensor, plain[..., 6:294, 1:449], rtol=0, atol=0)


def test_fit_size_errors():
    x = torch.zeros(1, 3, 20, 20)
    with pytest.raises(ShapeError, match="pad and crop were both requested; choose one"):
        fit_size(x, 16, pad=True, crop=True)
    with pytest.raises(ShapeError, match=r"image is 5×5: too small to reflect-pad to 16×16"):
        fit_size(torch.zeros(1, 3, 5, 5), 16, pad=True)
    with pytest.raises(ShapeError, match=r"image is 5×5: smaller than one 16-px cell"):
        fit_size(torch.zeros(1, 3, 5, 5), 16, crop=True)
    assert fit_size(x, 4)[0] is x  # already a multiple: untouched


def test_batch_of_images_needs_one_size(tmp_path, chelsea):
    _save(chelsea, tmp_path / "a.png")
    _save(chelsea[:, :448], tmp_path / "b.png")
    with pytest.raises(ShapeError, match=r"images of different sizes cannot share a batch \(a\.png 300×451, b\.png"):
        load_images([tmp_path / "a.png", tmp_path / "b.png"])
    _save(chelsea[::-1], tmp_path / "c.png")
    batch = load_images([tmp_path / "a.png", tmp_path / "c.png"], multiple=8, pad=True)
    assert batch.tensor.shape == (2, 3, 304, 456)
    torch.testing.assert_close(batch.tensor[1], batch.tensor[0].flip(1), rtol=0, atol=0)


def test_unreadable_files_say_what_they_are(tmp_path, chelsea):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(FileFormatError, match=r"notes\.png: not an image Pillow can read; expected a PNG, JPEG"):
        load_image(tmp_path / "notes.png")
    _save(chelsea, tmp_path / "c.bmp")
    with pytest.raises(FileFormatError, match=r"c\.bmp: a BMP image; latentbridge reads PNG, JPEG, WEBP"):
        load_image(tmp_path / "c.bmp")
    data = tmp_path / "c.png"
    _save(chelsea, data)
    data.write_bytes(data.read_bytes()[:2000])  # truncated
    with pytest.raises(FileFormatError, match=r"c\.png: the PNG data is damaged"):
        load_image(data)


def test_save_round_trips_pixels_and_provenance(tmp_path):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(1, 3, 24, 40, generator=g)
    meta = {"vae_name": "zoo-a", "format": "zoo-a", "history": ["encode zoo-a fp32"]}
    [path] = save_images(images, tmp_path / "out.png", metadata=meta)
    assert path == tmp_path / "out.png"
    assert read_png_metadata(path) == meta
    with Image.open(path) as im:
        assert im.mode == "RGB" and im.size == (40, 24)
        np.testing.assert_array_equal(np.asarray(im), to_uint8(images)[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temp file left behind
    # to_uint8 rounds to nearest: an error of at most half a step
    assert (torch.from_numpy(to_uint8(images)[0]).permute(2, 0, 1) / 255 - images[0]).abs().max() <= 0.5 / 255 + 1e-6


def test_save_batch_names_and_indexes_files(tmp_path):
    images = torch.stack([torch.full((3, 8, 8), v) for v in (0.0, 0.5, 1.0)])
    paths = save_images(images, tmp_path / "out.png", metadata={"k": 1})
    assert (
        [p.name for p in paths]
        == ["out-0.png", "out-1.png", "out-2.png"]
        == [p.name for p in output_paths(tmp_path / "out.png", 3)]
    )
    for i, p in enumerate(paths):
        assert read_png_metadata(p) == {"k": 1, "batch_index": i}
        with Image.open(p) as im:
            assert np.asarray(im)[0, 0, 0] == round(images[i, 0, 0, 0].item() * 255)


def test_save_video_writes_animated_png(tmp_path):
    video = torch.rand(1, 3, 5, 8, 8, generator=torch.Generator().manual_seed(1))
    [path] = save_images(video, tmp_path / "clip.png", metadata={"frames": 5}, fps=10)
    with Image.open(path) as im:
        assert im.n_frames == 5 and im.info.get("duration") == 100
        im.seek(3)
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), to_uint8(video.movedim(1, 2))[0, 3])
    assert read_png_metadata(path) == {"frames": 5}


def test_save_errors(tmp_path):
    images = torch.zeros(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"is not a \.png file; images are written as PNG"):
        save_images(images, tmp_path / "out.jpg")
    with pytest.raises(FileNotFoundError, match=r"output folder .* does not exist"):
        save_images(images, tmp_path / "nowhere" / "out.png")
    with pytest.raises(ShapeError, match=r"images to save are \[N, 3, H, W\] or \[N, 3, T, H, W\] in \[0, 1\], got"):
        save_images(torch.zeros(3, 8, 8), tmp_path / "out.png")


def test_read_png_metadata_errors(tmp_path, chelsea):
    _save(chelsea, tmp_path / "plain.png")
    assert read_png_metadata(tmp_path / "plain.png") == {}
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(PNG_KEY, "{broken")
    Image.fromarray(chelsea).save(tmp_path / "bad.png", pnginfo=info)
    with pytest.raises(FileFormatError, match=r"damaged 'latentbridge' text chunk \(not valid JSON"):
        read_png_metadata(tmp_path / "bad.png")
    _save(chelsea, tmp_path / "c.jpg")
    with pytest.raises(FileFormatError, match="a JPEG file; provenance is read from PNG files only"):
        read_png_metadata(tmp_path / "c.jpg")


def test_padding_parse_and_crop_errors():
    with pytest.raises(FileFormatError, match=r"padding record '1,2,3' is not four non-negative integers"):
        Padding.parse("1,2,3")
    with pytest.raises(ShapeError, match=r"cannot crop padding 4,4,0,0 \(top,bottom,left,right\) from a 8×8"):
        Padding(4, 4, 0, 0).crop(torch.zeros(1, 3, 8, 8))
    assert Padding(2, 2, 6, 7).scaled(1, 4) == Padding(0, 0, 1, 1)
