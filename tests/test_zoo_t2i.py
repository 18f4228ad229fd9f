"""The zoo's text-to-image models as shipped: files, sizes, licences, the StableDiffusionPipeline code path."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from latentbridge.zoo import ZOO_NAMES, zoo_path
from latentbridge.zoo.t2i import CAPTIONS, HELDOUT_CAPTIONS, T2I_MODELS, T2I_NAMES, T2I_PHOTOS, t2i_info, t2i_path


@pytest.fixture(scope="module", params=T2I_NAMES)
def folder(request):
    path = t2i_path(request.param)
    if not (path / "model_index.json").is_file():
        pytest.fail(f"the zoo model {request.param} is missing: run scripts/train_t2i.py")
    return path


def test_whole_zoo_fits_in_20_mb():
    files = [zoo_path(name) for name in ZOO_NAMES]
    files += [p for name in T2I_NAMES for p in t2i_path(name).rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    assert total <= 20 * 2**20, f"zoo is {total / 2**20:.1f} MiB"


def test_weights_are_fp16_and_the_layout_is_diffusers(folder):
    for part, file in (("unet", "diffusion_pytorch_model.safetensors"), ("text_encoder", "model.safetensors")):
        with safe_open(folder / part / file, "pt") as f:
            dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        assert dtypes == {"F16"}, f"{part}: {dtypes}"
        assert (folder / part / "config.json").is_file()
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["vae"] == [None, None]
    assert "OpenAI" in (folder / "tokenizer" / "LICENSE.txt").read_text()  # the CLIP vocabulary's MIT notice


def test_loads_through_stable_diffusion_pipeline_from_pretrained(folder):
    from diffusers import StableDiffusionPipeline

    from latentbridge.weights.load import load_vae

    model = next(m for m in T2I_MODELS if m.name == folder.name)
    vae = load_vae(model.vae).module
    pipe = StableDiffusionPipeline.from_pretrained(folder, vae=vae, local_files_only=True)
    assert pipe.safety_checker is None and pipe.unet.config.in_channels == vae.config.latent_channels
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == 256


def test_summary_in_zoo_json_covers_every_caption(folder):
    info = t2i_info()["models"][folder.name]
    evals = info["eval"]
    train = evals["train_captions_fp16_guidance_4"]
    assert set(train["per_caption"]) == {c for cs in CAPTIONS.values() for c in cs}
    assert set(evals["heldout_captions_fp16_guidance_4"]["per_caption"]) == set(HELDOUT_CAPTIONS.values())
    assert train["chance"] == pytest.approx(1 / len(T2I_PHOTOS))
    assert info["train_seconds"] > 0 and info["curve"]["eval"]
