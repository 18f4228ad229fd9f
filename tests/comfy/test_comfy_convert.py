"""The pack's in-memory conventions against ComfyUI 0.8.0's own classes: every ComfyUI latent format maps to the
registry format whose numbers it has (or to none), and LATENT dicts become Latents in ComfyUI's space and back."""

from __future__ import annotations

import pytest
import torch

import latentbridge as lb
from latentbridge.comfy._convert import (
    COMFY_FORMATS,
    TAG_KEY,
    Tag,
    format_of_comfy_class,
    from_comfy,
    model_format,
    retag,
    to_comfy,
)


class Model:
    """What the pack reads of a ComfyUI MODEL (a ModelPatcher): ``get_model_object("latent_format")``."""

    def __init__(self, latent_format):
        self.latent_format = latent_format

    def get_model_object(self, name):
        assert name == "latent_format"
        return self.latent_format


def _comfy_classes():
    import inspect

    import comfy.latent_formats

    return [
        c
        for _, c in inspect.getmembers(comfy.latent_formats, inspect.isclass)
        if issubclass(c, comfy.latent_formats.LatentFormat) and c is not comfy.latent_formats.LatentFormat
    ]


def test_every_comfyui_latent_format_is_mapped(comfy):
    """Each class of comfy/latent_formats.py is listed (a registry format or None); the mapped ones agree with the
    registry on channels in ComfyUI's space, dimensions, scale and shift."""
    classes = _comfy_classes()
    assert sorted(c.__name__ for c in classes) == sorted(COMFY_FORMATS)
    for cls in classes:
        found = format_of_comfy_class(cls())
        name = COMFY_FORMATS[cls.__name__]
        assert (found.format.name if found.format else None) == name, cls.__name__
        if found.format is None:
            assert cls.__name__ in found.note
            continue
        fmt, theirs = found.format, cls()
        assert fmt.space_shape(fmt.comfy_space)[0] == theirs.latent_channels
        assert fmt.dims == theirs.latent_dimensions


def test_a_subclass_with_other_numbers_is_not_its_parent(comfy):
    from comfy.latent_formats import SDXL

    class Custom(SDXL):
        scale_factor = 0.5

    found = model_format(Model(Custom()))
    assert found.format is None and "derives from SDXL (sdxl) but scales by 0.5" in found.note


def test_model_format_refuses_what_is_not_a_model(comfy):
    with pytest.raises(lb.InputTypeError, match="expected a ComfyUI MODEL"):
        model_format(object())


def test_latent_in_comfyuis_space_per_family(comfy):
    """FLUX.2 and LTX-Video LATENTs are model space (128 channels), others raw; without a format the channel count
    decides where it can (128 channels: model), else raw."""
    from comfy.latent_formats import SD3, Flux2

    flux2 = from_comfy({"samples": torch.randn(1, 128, 4, 4)}, model_format(Model(Flux2())))
    assert flux2.latent.format_name == "flux2" and flux2.latent.space == "model" and flux2.format_source == "model"
    sd3 = from_comfy({"samples": torch.randn(1, 16, 4, 4)}, model_format(Model(SD3())))
    assert sd3.latent.format_name == "sd3" and sd3.latent.space == "raw"
    assert from_comfy({"samples": torch.randn(1, 128, 4, 4)}).latent.space == "model"
    assert from_comfy({"samples": torch.randn(1, 4, 4, 4)}).latent.space == "raw"
    video = from_comfy({"samples": torch.randn(1, 16, 3, 4, 4)})
    assert video.latent.layout == "NCTHW" and video.latent.format is None


@pytest.mark.parametrize(
    ("samples", "error", "message"),
    [
        (torch.randn(1, 64, 100), lb.ShapeError, r"an audio latent \[N, C, L\]"),
        (torch.zeros(1, 4, 4, 4, dtype=torch.int64), lb.InputTypeError, "are torch.int64"),
        ("not a tensor", lb.InputTypeError, "expected a ComfyUI LATENT"),
    ],
)
def test_latents_the_pack_cannot_read(comfy, samples, error, message):
    with pytest.raises(error, match=message):
        from_comfy({"samples": samples})


def test_a_nested_latent_is_refused(comfy):
    nested = torch.nested.nested_tensor([torch.randn(4, 4, 4), torch.randn(8, 2, 2)])
    with pytest.raises(lb.InputTypeError, match="nested tensor"):
        from_comfy({"samples": nested})


def test_round_trip_keeps_other_keys_and_tags(comfy):
    lat = lb.Latent(torch.randn(2, 4, 4, 4), "sdxl", "model", provenance=lb.Provenance(vae_name="x.safetensors"))
    base = {"samples": torch.zeros(2, 4, 4, 4), "noise_mask": torch.ones(1, 1, 32, 32), "batch_index": [3, 4]}
    out = to_comfy(lat, base, source="test")
    assert torch.allclose(out["samples"], lat.tensor / lb.get_format("sdxl").scale)  # ComfyUI holds SDXL raw
    assert out["batch_index"] == [3, 4] and "noise_mask" in out
    tag = out[TAG_KEY]
    assert isinstance(tag, Tag) and (tag.format, tag.space, tag.channels, tag.source) == ("sdxl", "raw", 4, "test")
    back = from_comfy(out)
    assert back.format_source == "tag" and back.latent.format_name == "sdxl" and back.latent.space == "raw"
    assert back.latent.provenance.vae_name == "x.safetensors"
    one = to_comfy(lat.replace(tensor=lat.tensor[:1]), base)  # another batch size: per-sample keys are dropped
    assert "batch_index" not in one and "noise_mask" not in one


def test_a_stale_tag_is_ignored_and_said(comfy):
    out = to_comfy(lb.Latent(torch.randn(1, 4, 4, 4), "sd1", "raw"), source="Load Latent (latentbridge) a.latent")
    out["samples"] = torch.randn(1, 16, 4, 4)  # a node rebuilt the samples without the tag
    found = from_comfy(out)
    assert found.latent.format is None and found.tag is None
    assert "no longer fits these 16-channel samples" in found.notes[0]


def test_a_model_wins_over_the_tag_and_says_so(comfy):
    from comfy.latent_formats import SD15

    out = to_comfy(lb.Latent(torch.randn(1, 4, 4, 4), "sdxl", "raw"), source="earlier")
    found = from_comfy(out, model_format(Model(SD15())))
    assert found.latent.format_name == "sd1" and "tagged sdxl by earlier" in found.notes[0]
    tagged = retag(out, found, source="check")
    assert tagged[TAG_KEY].format == "sd1" and tagged["samples"] is out["samples"]
