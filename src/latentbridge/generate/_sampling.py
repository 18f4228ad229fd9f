"""Loading text-to-image models from local files, and the sampling stage.

Two ways of sampling, both on diffusers' own classes:

* UNet pipelines (SD 1.x/2.x-style ``StableDiffusionPipeline`` and SDXL-style ``StableDiffusionXLPipeline``, the zoo's
  ``t2i-a``/``t2i-c``): latentbridge runs the denoising loop over the pipeline's components (its UNet and scheduler:
  ``set_timesteps``, ``scale_model_input``, ``step``, ``add_noise``), so a run can start and stop at any fraction of
  the schedule (``denoise_start``/``denoise_end``: SDXL's base -> refiner hand-off) and img2img can start from any
  latent of any channel count (``init`` + ``strength``). The loop is the one every diffusers SD pipeline runs:
  classifier-free guidance on a doubled batch, ``noise_uncond + g * (noise_text - noise_uncond)``.
* Transformer pipelines (SD3, FLUX.1, FLUX.2): the pipeline's own ``__call__`` with our noise as ``latents`` (FLUX.1
  packed into its 2x2 tokens first), full denoising only, ``output_type="latent"``; the token sequences it returns
  are unpacked into model-space latents.

Every sample is a :class:`~latentbridge.latent.Latent` in **model** space whose provenance records the model, its
VAE and that VAE's sha256, the seed, the prompt, steps, guidance, scheduler and stage.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from latentbridge.errors import IncompatibleError, LatentBridgeError, ShapeError, WeightsError
from latentbridge.formats import LatentFormat, get_format, pack, tokens_to_model
from latentbridge.generate._latents import with_stage
from latentbridge.generate._prompts import PromptEmbedding, TextEncoder, encode_prompt
from latentbridge.latent import Latent, Provenance

# diffusers pipeline class -> latent format of its VAE (a model folder may override with format=)
PIPELINE_FORMATS: dict[str, str] = {
    "StableDiffusionPipeline": "sd1",
    "StableDiffusionImg2ImgPipeline": "sd1",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusionXLImg2ImgPipeline": "sdxl",
    "StableDiffusion3Pipeline": "sd3",
    "FluxPipeline": "flux1",
    "Flux2Pipeline": "flux2",
}
UNET_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline")
SDXL_PIPELINES = ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline")


@dataclass(frozen=True, slots=True, eq=False)
class Model:
    """A loaded text-to-image model.

    Attributes:
        name: what it was loaded from (a folder, a file, a zoo name).
        pipeline: the diffusers pipeline (components: ``unet`` or ``transformer``, ``scheduler``, text encoders).
        format: the latent format of its VAE (the space it samples in).
        vae_name: the VAE it decodes with ("zoo-a", the folder's ``vae/``).
        vae_sha256: sha256 of that VAE's weight file ("" when built in memory).
    """

    name: str
    pipeline: Any
    format: LatentFormat
    vae_name: str = ""
    vae_sha256: str = ""

    @property
    def kind(self) -> str:
        """The pipeline's class name ("StableDiffusionPipeline", "FluxPipeline", ...)."""
        return type(self.pipeline).__name__

    @property
    def text_encoder(self) -> TextEncoder | None:
        """The pipeline's (first) CLIP text encoder, for :func:`~latentbridge.generate._prompts.encode_prompt`."""
        pipe = self.pipeline
        if getattr(pipe, "text_encoder", None) is None or getattr(pipe, "tokenizer", None) is None:
            return None
        return TextEncoder(name=self.name, tokenizer=pipe.tokenizer, model=pipe.text_encoder)


def from_pipeline(pipeline: Any, *, name: str, format: str | LatentFormat | None = None, vae_sha256: str = "") -> Model:
    """Wrap an already built diffusers pipeline (its format from its class unless ``format`` says otherwise).

    Raises:
        LatentBridgeError: a pipeline class latentbridge does not know and no ``format``.
    """
    kind = type(pipeline).__name__
    if format is None and kind not in PIPELINE_FORMATS:
        raise LatentBridgeError(
            f"{name}: latentbridge does not know the latent format of a {kind}; pass format=NAME "
            f"(known pipelines: {', '.join(sorted(PIPELINE_FORMATS))})"
        )
    fmt = get_format(format if format is not None else PIPELINE_FORMATS[kind])
    if hasattr(pipeline, "set_progress_bar_config"):
        pipeline.set_progress_bar_config(disable=True)
    return Model(name=name, pipeline=pipeline, format=fmt, vae_name=f"{name}/vae", vae_sha256=vae_sha256)


def load_model(
    spec: str | Path,
    *,
    format: str | LatentFormat | None = None,
    config: str | Path | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Model:
    """Load a text-to-image model from local files only (never the network).

    Args:
        spec: a zoo name ("t2i-a", "t2i-c"), a diffusers pipeline folder (``model_index.json``), or a single
            checkpoint file (``.safetensors``/``.ckpt``; needs ``config``).
        format: the latent format, when the pipeline class does not tell (see ``PIPELINE_FORMATS``).
        config: for a single file: a local diffusers pipeline folder holding the configs of the same model
            (``from_single_file`` would otherwise fetch them from the Hub).
        device, dtype: where and in which precision the pipeline runs.

    Raises:
        WeightsError: nothing loadable at ``spec``, or a single file without ``config``.
    """
    from latentbridge.weights import sha256_file
    from latentbridge.zoo import zoo_path
    from latentbridge.zoo.t2i import is_t2i_name, load_t2i_pipeline, t2i_model

    name = str(spec)
    if is_t2i_name(name):
        pipe = load_t2i_pipeline(name, device=device, dtype=dtype)
        vae = t2i_model(name).vae
        model = from_pipeline(pipe, name=name, format=vae, vae_sha256=sha256_file(zoo_path(vae)))
        return dataclasses.replace(model, vae_name=vae)
    path = Path(spec).expanduser()
    import diffusers

    if path.is_dir():
        index_file = path / "model_index.json"
        if not index_file.is_file():
            raise WeightsError(f"{path} is a folder without model_index.json: pass a diffusers pipeline folder")
        index = json.loads(index_file.read_text())
        kwargs: dict[str, Any] = {"local_files_only": True, "torch_dtype": dtype}
        if "safety_checker" in index:
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        pipe = diffusers.DiffusionPipeline.from_pretrained(path, **kwargs).to(device)
        vae_files = sorted((path / "vae").glob("*.safetensors")) if (path / "vae").is_dir() else []
        model = from_pipeline(pipe, name=name, format=format, vae_sha256=sha256_file(vae_files[0]) if vae_files else "")
        return model
    if path.is_file():
        if config is None:
            raise WeightsError(
                f"{path} is a single checkpoint file: pass config=FOLDER, a local diffusers pipeline folder of the "
                "same model (its model_index.json and component configs), because from_single_file would "
                "otherwise download them"
            )
        index = json.loads((Path(config) / "model_index.json").read_text())
        cls = getattr(diffusers, index["_class_name"])
        pipe = cls.from_single_file(str(path), config=str(config), local_files_only=True, torch_dtype=dtype).to(device)
        return from_pipeline(pipe, name=name, format=format, vae_sha256=sha256_file(path))
    raise WeightsError(f"no model at {path}: pass a zoo name (t2i-a, t2i-c), a pipeline folder or a checkpoint file")


def model_vae(model: Model) -> Any:
    """The model's own VAE as a latentbridge ``VAE`` (for ``codec.decode``): the zoo file of a zoo model, else the
    pipeline's ``vae`` component wrapped with the model's format and recorded sha256.

    Raises:
        LatentBridgeError: the pipeline was built without a VAE.
    """
    from latentbridge import load_vae
    from latentbridge.vae import from_autoencoder_kl
    from latentbridge.zoo import is_zoo_name

    if is_zoo_name(model.vae_name):
        return load_vae(model.vae_name)
    if getattr(model.pipeline, "vae", None) is None:
        raise LatentBridgeError(f"{model.name} was built without a VAE: load the VAE it came with (load_vae)")
    return from_autoencoder_kl(model.pipeline.vae, name=model.vae_name, fmt=model.format, sha256=model.vae_sha256)


def set_scheduler(model: Model, scheduler: str | Path | Any) -> Model:
    """A copy of ``model`` whose pipeline uses another scheduler.

    Args:
        scheduler: a diffusers scheduler class name ("EulerDiscreteScheduler"), built from the current scheduler's
            config (prediction type and noise schedule carry over); a folder with ``scheduler_config.json``; or a
            scheduler object.
    """
    import diffusers

    pipe = model.pipeline
    if isinstance(scheduler, str) and not Path(scheduler).exists():
        cls = getattr(diffusers, scheduler, None)
        if cls is None or not scheduler.endswith("Scheduler"):
            raise LatentBridgeError(
                f"unknown diffusers scheduler {scheduler!r}: pass a class name like 'DDIMScheduler'"
            )
        new = cls.from_config(pipe.scheduler.config)
    elif isinstance(scheduler, str | Path):
        folder = Path(scheduler)
        cfg = json.loads((folder / "scheduler_config.json").read_text())
        new = getattr(diffusers, cfg["_class_name"]).from_pretrained(folder)
    else:
        new = scheduler
    components = dict(pipe.components)
    components["scheduler"] = new
    rebuilt = type(pipe)(**components)
    rebuilt.set_progress_bar_config(disable=True)
    return dataclasses.replace(model, pipeline=rebuilt)


@dataclass(frozen=True, slots=True)
class Step:
    """Progress of one sampling step, handed to ``callback``.

    Attributes:
        index: 0-based step number within this run; total: steps this run makes.
        timestep: the scheduler's timestep (UNet pipelines) or sigma-scaled timestep (flow pipelines).
        latent: the current model-space latent tensor (UNet pipelines), or None.
        seconds: time since the run began.
    """

    index: int
    total: int
    timestep: float
    latent: torch.Tensor | None
    seconds: float


def _schedule_window(steps: int, start: float, end: float) -> tuple[int, int]:
    for what, value in (("denoise_start", start), ("denoise_end", end)):
        if not 0.0 <= value <= 1.0:
            raise LatentBridgeError(f"{what} is a fraction of the schedule in [0, 1], got {value}")
    if start >= end:
        raise LatentBridgeError(f"denoise_start ({start}) must be below denoise_end ({end}): nothing would be denoised")
    first, last = round(start * steps), round(end * steps)
    if first >= last:
        raise LatentBridgeError(
            f"denoise_start {start} and denoise_end {end} of {steps} steps leave no step to run; use more steps"
        )
    return first, last


def _provenance(model: Model, base: Provenance, prompt: str, negative: str, **extra: object) -> Provenance:
    stamped = with_stage(base, "sample", model=model.name, negative_prompt=negative, **extra)
    return dataclasses.replace(stamped, vae_name=model.vae_name, vae_sha256=model.vae_sha256, prompt=prompt)


def _check_latent(model: Model, latent: Latent, what: str) -> torch.Tensor:
    if latent.format is not None and latent.format.name != model.format.name:
        raise IncompatibleError(
            f"the {what} is a {latent.format.name} latent but {model.name} samples in {model.format.name}: move it "
            f"into {model.format.name} first (decode with its own VAE and re-encode with {model.vae_name})"
        )
    if latent.space == "raw":
        raise IncompatibleError(
            f"the {what} is raw VAE output; models sample in model space: convert it with latent.to_space('model')"
        )
    x = latent.canonical().tensor if latent.format is not None else latent.tensor
    channels = model.format.model_channels
    if x.ndim != 4 or x.shape[1] != channels:
        raise ShapeError(
            f"{model.name} samples [N, {channels}, h, w] model-space latents ({model.format.name}); the {what} has "
            f"shape {tuple(x.shape)}: make it with empty_latent('{model.format.name}', ...) and noise(...)"
        )
    return x


def sample(
    model: Model,
    prompt: str | PromptEmbedding,
    noise: Latent,
    *,
    negative: str = "",
    steps: int = 20,
    guidance: float = 4.0,
    denoise_start: float = 0.0,
    denoise_end: float = 1.0,
    init: Latent | None = None,
    strength: float | None = None,
    callback: Callable[[Step], None] | None = None,
) -> Latent:
    """Denoise a latent with a text-to-image model: txt2img, img2img, or one part of a split schedule.

    Args:
        model: from :func:`load_model` or :func:`from_pipeline`.
        prompt: the text (UNet pipelines with one CLIP encoder: encoded A1111-style by
            :func:`~latentbridge.generate._prompts.encode_prompt`; SDXL and transformer pipelines: by the pipeline's
            own ``encode_prompt``), or a ready :class:`PromptEmbedding` (whose own negative is then used).
        noise: model-space latent [N, C, h, w] in the model's format: unit noise from
            :func:`~latentbridge.generate._latents.noise` for txt2img and img2img; for ``denoise_start > 0`` without
            ``init``, the partly denoised output of a run that stopped at ``denoise_end = denoise_start``.
        negative: negative prompt for classifier-free guidance ("" = empty prompt).
        steps: steps of the full schedule (a split run makes only its share).
        guidance: classifier-free guidance scale; <= 1 runs the conditional branch only.
        denoise_start, denoise_end: the part of the schedule to run, as fractions (UNet pipelines only): 0 -> 1 is
            a whole run; SDXL-style hand-offs run 0 -> 0.8 on the base and 0.8 -> 1 on the refiner.
        init: a clean model-space latent for img2img (UNet pipelines only); noised to the level where the run starts.
        strength: img2img strength in (0, 1]: the run starts at ``1 - strength`` of the schedule (needs ``init``).
        callback: called after every step with a :class:`Step`.

    Returns:
        A model-space :class:`~latentbridge.latent.Latent` [N, C, h, w] in the model's format (FLUX.1/FLUX.2 token
        sequences unpacked), float32 on the CPU; provenance: model, VAE, VAE sha256, seed, prompt, negative, steps,
        guidance, scheduler, denoise window and the stage in the history.

    Raises:
        IncompatibleError: a latent of another format, or raw.
        ShapeError: a latent whose channel count is not the model's.
        LatentBridgeError: bad fractions or strength, or an option the model's kind does not support.
    """
    if steps < 1:
        raise LatentBridgeError(f"steps must be a positive number, got {steps}")
    if strength is not None:
        if init is None:
            raise LatentBridgeError("strength is for img2img: pass init=LATENT (the clean model-space latent) as well")
        if not 0.0 < strength <= 1.0:
            raise LatentBridgeError(f"strength is in (0, 1], got {strength}")
        denoise_start = 1.0 - strength
    x = _check_latent(model, noise, "noise")
    start, stop = _schedule_window(steps, denoise_start, denoise_end)
    text = prompt if isinstance(prompt, str) else prompt.prompt
    neg = negative if isinstance(prompt, str) else prompt.negative_prompt
    if model.kind in UNET_PIPELINES or model.kind in SDXL_PIPELINES:
        out, seconds = _sample_unet(model, prompt, negative, x, steps, guidance, start, stop, init, callback)
    else:
        if (start, stop) != (0, steps) or init is not None:
            raise LatentBridgeError(
                f"{model.kind}: latentbridge runs transformer pipelines only from pure noise to the end (no "
                "denoise_start/denoise_end/init/strength yet); use a UNet pipeline for split or img2img runs"
            )
        out, seconds = _sample_pipeline(model, prompt, negative, x, steps, guidance, callback)
    scheduler = type(model.pipeline.scheduler).__name__
    provenance = _provenance(
        model,
        noise.provenance,
        text,
        neg,
        steps=steps,
        guidance=guidance,
        scheduler=scheduler,
        denoise=f"{start / steps:g}-{stop / steps:g}",
        seconds=round(seconds, 2),
    )
    mode = "img2img" if init is not None else "txt2img" if start == 0 else "continue"
    step_note = f"steps {start}-{stop} of {steps}"
    provenance = provenance.then(f"sample {mode} {model.name} {step_note} guidance {guidance:g} {scheduler}")
    return Latent(tensor=out.float().cpu(), format=model.format, space="model", layout="NCHW", provenance=provenance)


def _unet_conditioning(model: Model, prompt: str | PromptEmbedding, negative: str, cfg: bool, x: torch.Tensor):
    """(encoder_hidden_states, added_cond_kwargs or None) for the doubled (cfg) or single batch; with guidance and a
    negative of another length than the prompt, (uncond, cond) as a pair for two passes."""
    pipe = model.pipeline
    n = x.shape[0]
    device = x.device
    if model.kind in SDXL_PIPELINES:
        if isinstance(prompt, PromptEmbedding):
            raise LatentBridgeError("SDXL pipelines encode with two CLIP models: pass the prompt as text")
        cond, uncond, pooled, uncond_pooled = pipe.encode_prompt(
            prompt, device=device, num_images_per_prompt=n, do_classifier_free_guidance=cfg, negative_prompt=negative
        )
        h, w = x.shape[-2] * pipe.vae_scale_factor, x.shape[-1] * pipe.vae_scale_factor
        time_ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=cond.dtype, device=device).repeat(n, 1)
        if cfg:
            return torch.cat([uncond, cond]), {
                "text_embeds": torch.cat([uncond_pooled, pooled]),
                "time_ids": torch.cat([time_ids, time_ids]),
            }
        return cond, {"text_embeds": pooled, "time_ids": time_ids}
    if isinstance(prompt, str):
        encoder = model.text_encoder
        if encoder is None:
            raise LatentBridgeError(f"{model.name} has no text encoder: pass a PromptEmbedding instead of text")
        prompt = encode_prompt(prompt, encoder, negative=negative if cfg else None)
    dtype = pipe.unet.dtype
    cond = prompt.hidden.to(device, dtype).expand(n, -1, -1)
    if not cfg:
        return cond, None
    if prompt.negative is None:
        raise LatentBridgeError("guidance > 1 needs a negative embedding: encode the prompt with negative=''")
    uncond = prompt.negative.to(device, dtype).expand(n, -1, -1)
    if uncond.shape[1] != cond.shape[1]:  # A1111's default: prompts of different lengths run as separate passes
        return (uncond, cond), None
    return torch.cat([uncond, cond]), None


def _sample_unet(
    model: Model,
    prompt: str | PromptEmbedding,
    negative: str,
    x: torch.Tensor,
    steps: int,
    guidance: float,
    start: int,
    stop: int,
    init: Latent | None,
    callback: Callable[[Step], None] | None,
) -> tuple[torch.Tensor, float]:
    pipe = model.pipeline
    unet = pipe.unet
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)  # its own state: the pipeline's is shared
    device, dtype = unet.device, unet.dtype
    cfg = guidance > 1.0
    began = time.perf_counter()
    with torch.no_grad():
        hidden, added = _unet_conditioning(model, prompt, negative, cfg, x.to(device))
        scheduler.set_timesteps(steps, device=device)
        timesteps = scheduler.timesteps
        order = getattr(scheduler, "order", 1)
        if order != 1:
            raise LatentBridgeError(
                f"{type(scheduler).__name__} takes {order} model calls per step; use a first-order scheduler "
                "(DDIMScheduler, EulerDiscreteScheduler, DPMSolverMultistepScheduler ...) with latentbridge's loop"
            )
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start)
        latents = x.to(device, torch.float32)
        if init is not None:
            clean = _check_latent(model, init, "init latent").to(device, torch.float32)
            if clean.shape != latents.shape:
                raise ShapeError(f"init latent {tuple(clean.shape)} and noise {tuple(latents.shape)} differ in shape")
            latents = scheduler.add_noise(clean, latents, timesteps[start : start + 1])
        elif start == 0:
            latents = latents * scheduler.init_noise_sigma
        window = timesteps[start:stop]
        kwargs = {"added_cond_kwargs": added} if added is not None else {}
        for i, t in enumerate(window):
            if isinstance(hidden, tuple):  # uncond and cond of different token counts: one pass each
                inp = scheduler.scale_model_input(latents, t).to(dtype)
                uncond, cond = (unet(inp, t, encoder_hidden_states=h).sample.float() for h in hidden)
                pred = uncond + guidance * (cond - uncond)
            else:
                inp = scheduler.scale_model_input(torch.cat([latents, latents]) if cfg else latents, t)
                pred = unet(inp.to(dtype), t, encoder_hidden_states=hidden, **kwargs).sample.float()
                if cfg:
                    uncond, cond = pred.chunk(2)
                    pred = uncond + guidance * (cond - uncond)
            latents = scheduler.step(pred, t, latents).prev_sample
            if callback is not None:
                callback(Step(i, len(window), float(t), latents, time.perf_counter() - began))
    return latents, time.perf_counter() - began


def _sample_pipeline(
    model: Model,
    prompt: str | PromptEmbedding,
    negative: str,
    x: torch.Tensor,
    steps: int,
    guidance: float,
    callback: Callable[[Step], None] | None,
) -> tuple[torch.Tensor, float]:
    pipe, fmt = model.pipeline, model.format
    n, _, h, w = x.shape
    began = time.perf_counter()
    kwargs: dict[str, Any] = {
        "num_inference_steps": steps,
        "guidance_scale": guidance,
        "height": h * fmt.model_spatial_ratio,
        "width": w * fmt.model_spatial_ratio,
        "output_type": "latent",
    }
    if isinstance(prompt, PromptEmbedding):
        prompt = prompt.padded()  # these pipelines batch prompt and negative together
        kwargs["prompt_embeds"] = prompt.hidden.expand(n, -1, -1)
        if model.kind == "FluxPipeline":
            kwargs["pooled_prompt_embeds"] = prompt.pooled.expand(n, -1)
        if model.kind == "StableDiffusion3Pipeline":
            kwargs["pooled_prompt_embeds"] = prompt.pooled.expand(n, -1)
            if prompt.negative is not None and prompt.negative_pooled is not None:
                kwargs["negative_prompt_embeds"] = prompt.negative.expand(n, -1, -1)
                kwargs["negative_pooled_prompt_embeds"] = prompt.negative_pooled.expand(n, -1)
    else:
        kwargs["prompt"] = [prompt] * n
        if model.kind == "StableDiffusion3Pipeline":
            kwargs["negative_prompt"] = [negative] * n
    latents = x
    if model.kind == "FluxPipeline":  # FluxPipeline takes its 2x2-packed tokens [N, L, 64]
        latents = pack(x, fmt.token_patch).flatten(2).transpose(1, 2)
    kwargs["latents"] = latents.to(pipe.device, pipe.dtype)
    total = steps

    def on_step(_pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if callback is not None:
            callback(Step(index, total, float(timestep), None, time.perf_counter() - began))
        return tensors

    kwargs["callback_on_step_end"] = on_step
    with torch.no_grad():
        out = pipe(**kwargs).images
    if out.ndim == 3:  # token sequence [N, L, D]
        out = tokens_to_model(out, fmt, (h // fmt.token_patch, w // fmt.token_patch))
    return out, time.perf_counter() - began
