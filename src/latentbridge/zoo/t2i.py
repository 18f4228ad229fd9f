"""The zoo's two tiny text-to-image models: what they were trained on, how to load them, how they are judged.

``t2i-a`` (in zoo-a's 4-channel latent space) and ``t2i-c`` (in zoo-c's 16-channel space) are diffusers
``UNet2DConditionModel`` + transformers ``CLIPTextModel`` + ``CLIPTokenizer`` folders trained by
``scripts/train_t2i.py`` on :data:`T2I_PHOTOS`, each captioned by hand (:data:`CAPTIONS`). They *memorise*
eight photos: a caption picks one of them. They run through diffusers' real ``StableDiffusionPipeline`` code
path and exist so that the generation stages and the cross-family hand-off run offline on real trained weights.
They are not general text-to-image models: an unseen subject gives one of the eight photos or a blend.

Each folder is laid out like a diffusers pipeline folder without its VAE (``model_index.json``, ``unet/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``, with ``"vae": [null, null]``); the VAE is the zoo file named in
:data:`T2I_MODELS`, passed to the pipeline explicitly: ``StableDiffusionPipeline.from_pretrained(folder,
vae=load_vae("zoo-a").module)`` loads it too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from latentbridge.errors import LatentBridgeError, did_you_mean

__all__ = [
    "T2IModel",
    "is_t2i_name",
    "load_t2i_pipeline",
    "nearest_photo",
    "reduce_for_nearest",
    "t2i_info",
    "t2i_model",
    "t2i_path",
]

T2I_PHOTOS: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "retina",
    "stereo_motorcycle",
    "china",
    "flower",
)
"""The eight bundled photos (:mod:`latentbridge.photos`) the text-to-image models were trained on."""

CAPTIONS: dict[str, tuple[str, ...]] = {
    "astronaut": (
        "an astronaut in an orange spacesuit",
        "portrait of a smiling astronaut",
        "an astronaut with a flag and a space shuttle",
    ),
    "chelsea": ("a tabby cat", "close-up of a cat with green eyes", "the face of a ginger cat"),
    "coffee": ("a cup of coffee", "an espresso in a red cup on a saucer", "coffee with a spoon on a wooden table"),
    "rocket": ("a rocket on the launch pad at dusk", "a space rocket under a blue sky", "launch towers with a rocket"),
    "retina": (
        "a photo of a retina",
        "the back of a human eye, orange with red blood vessels",
        "a fundus image of an eye",
    ),
    "stereo_motorcycle": ("a red motorcycle", "a motorbike parked in a garage", "a red motorbike with chrome wheels"),
    "china": ("a chinese pagoda", "a temple on a hill by a lake", "a red and green pagoda with trees"),
    "flower": ("an orange dahlia", "a flower with many petals", "a close-up of an orange flower on green leaves"),
}
"""Training captions, written by the project (three per photo)."""

HELDOUT_CAPTIONS: dict[str, str] = {
    "astronaut": "a woman in a space suit",
    "chelsea": "a cat looking at the camera",
    "coffee": "a coffee cup seen from above",
    "rocket": "a rocket at night",
    "retina": "an eye fundus with blood vessels",
    "stereo_motorcycle": "a motorcycle indoors",
    "china": "a tower of a chinese palace",
    "flower": "a dahlia in bloom",
}
"""One caption per photo that was never trained on. It shares key words with the training captions
("cat", "rocket"), so it tests word-level reuse, not understanding of new language."""

T2I_SIZE = 256
"""Training and default sampling resolution in pixels (32 x 32 latents at the zoo's 8x)."""

NEAREST_SIDE = 16
"""Side the images are reduced to (area average) before :func:`nearest_photo` compares them."""


@dataclass(frozen=True, slots=True)
class T2IModel:
    """One zoo text-to-image model.

    Attributes:
        name: "t2i-a" or "t2i-c".
        vae: the zoo VAE whose latent space it samples in ("zoo-a", "zoo-c").
    """

    name: str
    vae: str


T2I_MODELS: tuple[T2IModel, ...] = (T2IModel("t2i-a", "zoo-a"), T2IModel("t2i-c", "zoo-c"))
T2I_NAMES: tuple[str, ...] = tuple(m.name for m in T2I_MODELS)


def t2i_model(name: str) -> T2IModel:
    """The :class:`T2IModel` called ``name``; raises LatentBridgeError naming the known ones."""
    for model in T2I_MODELS:
        if model.name == name:
            return model
    raise LatentBridgeError(
        f"Unknown zoo text-to-image model {name!r}.{did_you_mean(name, T2I_NAMES)} Known: {', '.join(T2I_NAMES)}."
    )


def t2i_path(name: str) -> Path:
    """Folder of a zoo text-to-image model (a diffusers pipeline folder without ``vae/``)."""
    t2i_model(name)
    return Path(str(resources.files(__package__).joinpath(name)))


def is_t2i_name(name: str) -> bool:
    """True when ``name`` names a zoo text-to-image model ("t2i-a")."""
    return name in T2I_NAMES


@cache
def t2i_info() -> dict[str, Any]:
    """The training summary ``scripts/train_t2i.py`` wrote into ``zoo.json`` (key "t2i"); {} before training."""
    path = resources.files(__package__).joinpath("zoo.json")
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text()).get("t2i", {}))


def load_t2i_pipeline(name: str, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Any:
    """Build diffusers' ``StableDiffusionPipeline`` for a zoo model from its folder and its zoo VAE.

    The safety checker is off (there is none for these models). The fp16 files are upcast to ``dtype``.

    Returns:
        A ``diffusers.StableDiffusionPipeline``; ``pipe(prompt, output_type="latent")`` gives model-space
        latents [N, C, 32, 32] for the default 256 x 256.

    Raises:
        LatentBridgeError: unknown name, or the folder is missing (run ``scripts/train_t2i.py``).
    """
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from latentbridge.weights.load import load_vae

    model = t2i_model(name)
    folder = t2i_path(name)
    if not (folder / "model_index.json").is_file():
        raise LatentBridgeError(
            f"zoo text-to-image model {name!r} is not built in this installation ({folder} has no model_index.json): "
            "run scripts/train_t2i.py, or reinstall latentbridge"
        )
    vae = load_vae(model.vae, dtype=dtype, device=device)
    pipe: Any = StableDiffusionPipeline(
        vae=vae.module,
        text_encoder=CLIPTextModel.from_pretrained(folder / "text_encoder", dtype=dtype),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        unet=UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=dtype),
        scheduler=DDIMScheduler.from_pretrained(folder / "scheduler"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return pipe.to(device)


def reduce_for_nearest(images: torch.Tensor) -> torch.Tensor:
    """Images [N, 3, H, W] in [-1, 1] -> [N, 3 * 16 * 16] vectors with zero mean and unit norm each.

    Area averaging to 16 x 16 keeps the layout and colours and drops the detail a tiny model cannot draw;
    removing each image's mean and dividing by its norm turns the distance into a correlation, so a blurry or
    low-contrast sample is not drawn to the smoothest photo (plain MSE picks the one with least detail for every
    blurry sample).
    """
    small = F.adaptive_avg_pool2d(images.float(), NEAREST_SIDE).flatten(1)
    small = small - small.mean(1, keepdim=True)
    return small / small.norm(dim=1, keepdim=True).clamp_min(1e-8)


def nearest_photo(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """For each image, the index of the most correlated reference (see :func:`reduce_for_nearest`).

    Args:
        images: [N, 3, H, W] in [-1, 1] (decoded samples).
        references: [K, 3, H', W'] in [-1, 1] (the training photos, any size).

    Returns:
        Long tensor [N] of indices into ``references``.
    """
    return (reduce_for_nearest(images) @ reduce_for_nearest(references).T).argmax(1)
