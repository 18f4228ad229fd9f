"""Train the zoo's two tiny text-to-image models (diffusers UNet2DConditionModel + transformers CLIPTextModel).

``t2i-a`` samples in zoo-a's latent space (4 ch), ``t2i-c`` in zoo-c's (16 ch). Both memorise the eight captioned
photos of ``latentbridge.zoo.t2i`` (``T2I_PHOTOS``, ``CAPTIONS``) at 256 x 256 (32 x 32 latents) and load through
diffusers' real ``StableDiffusionPipeline`` code path (``latentbridge.zoo.t2i.load_t2i_pipeline``). They exist so the
generation stages and the hand-off between latent spaces run offline on trained weights; they are not general
text-to-image models.

What a failed probe taught (FACTS.md: a 6.6 M-parameter UNet, epsilon prediction, 472 steps did not separate eight
captions), and what this recipe does instead:
- v-prediction with min-SNR-5 loss weights (epsilon prediction gives almost no gradient at the high noise levels where
  the caption decides the picture), stratified timesteps per batch;
- a 1.7 M-parameter UNet (widths 32/64/64, one layer per block, cross-attention at the two lower levels) and a
  2-layer, 64-wide CLIP text encoder, so one step costs ~0.3 s on one thread and thousands of steps fit;
- ``addition_embed_type="text"``: diffusers' TextTimeEmbedding pools the text encoder's hidden states into the time
  embedding, so every ResNet block sees the caption, not only the cross-attention layers (the pipeline code path is
  unchanged: it still passes only ``encoder_hidden_states``);
- 10 % of captions dropped to "" (the pipeline's negative prompt) so classifier-free guidance works;
- an EMA of the weights (decay 0.999) is what ships.

Tokenizer: a CLIP BPE vocabulary reduced to what the captions need. The full vocabulary (OpenAI CLIP's
``bpe_simple_vocab_16e6.txt.gz``, MIT licence, read from the ``clip-anytorch`` wheel or the file itself, given by
``--clip-bpe``) has 49,408 tokens: at width 64 that embedding alone is 6.3 MB in fp16 per model, a third of the
package's 20 MB budget. The reduced vocabulary keeps the 512 byte tokens (so every string still tokenises), every
merge that any caption word (training, held-out, test prompts) uses in the full BPE, in the full list's order, and the
two special tokens. BPE applies the lowest-ranked merge present; all merges a word uses are kept and the kept ones keep
their order, so those words tokenise into exactly the same token strings as with the full vocabulary (checked at build
time); other words fall back to shorter pieces. Byte tokens keep CLIP's ids (0-511); merged tokens and the specials
are renumbered.

Measured after training (written into ``zoo/zoo.json`` under "t2i", and printed): for each caption and each of 8 seeds
a 20-step DDIM sample through the pipeline, decoded by the zoo VAE, and the training photo it correlates best with
(``latentbridge.zoo.t2i.nearest_photo``: 16 x 16 area average, zero mean, unit norm). Accuracy = how often that is the
captioned photo; chance is 1/8.

Usage::

    pip download --no-deps clip-anytorch==2.6.0 -d /tmp/clip     # the vocabulary (or any bpe_simple_vocab_16e6.txt.gz)
    nice -n 10 python scripts/train_t2i.py --clip-bpe /tmp/clip/clip_anytorch-2.6.0-py3-none-any.whl
    python scripts/train_t2i.py --clip-bpe ... --only t2i-a --out /tmp/t2i-try --set steps=500   # an experiment

Both models train one after the other in one process with one torch thread (``--threads 1``): results are
reproducible for a fixed thread count (initialisation, batches, noise and timesteps all come from seeded generators).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gzip
import importlib.metadata
import io
import itertools
import json
import math
import re
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

REPO = Path(__file__).resolve().parents[1]
ZOO_DIR = REPO / "src" / "latentbridge" / "zoo"
sys.path.insert(0, str(REPO / "src"))  # run from a checkout without installing

from latentbridge.photos import photo_tensor  # noqa: E402
from latentbridge.weights.load import load_vae  # noqa: E402
from latentbridge.zoo.t2i import CAPTIONS, HELDOUT_CAPTIONS, T2I_PHOTOS, T2I_SIZE, nearest_photo  # noqa: E402

# Extra words the reduced vocabulary keeps whole: the tests' and the demo's prompts.
EXTRA_WORDS = "photo of a the an and with in on at by, masterpiece best quality detailed red blue green orange BREAK"
CLIP_MERGES = 49152 - 256 - 2  # the merges CLIP's tokenizer reads from bpe_simple_vocab_16e6.txt.gz
SCHEDULER = {  # SD 1.x's noise schedule, v-prediction
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "v_prediction",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "timestep_spacing": "trailing",
}


@dataclass(frozen=True)
class T2ISpec:
    """One zoo text-to-image model: its latent space, architecture and training settings."""

    name: str
    vae: str
    seed: int
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    attention_heads: int = 8  # diffusers' ``attention_head_dim`` (a head count in UNet2DConditionModel)
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 4
    steps: int = 4000
    batch_size: int = 8  # one latent per photo: every batch holds each photo once
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 200
    lr_final_fraction: float = 0.1
    caption_dropout: float = 0.1
    min_snr_gamma: float = 5.0
    ema_decay: float = 0.999
    eval_every: int = 500
    eval_seeds: int = 8
    eval_steps: int = 20
    guidance: float = 4.0


T2I: tuple[T2ISpec, ...] = (
    T2ISpec(name="t2i-a", vae="zoo-a", seed=1414),
    T2ISpec(name="t2i-c", vae="zoo-c", seed=1616),
)


# --------------------------------------------------------------------------------------------- tokenizer


def bytes_to_unicode() -> list[str]:
    """CLIP's (and GPT-2's) byte -> printable character table, in byte-token order (ids 0-255)."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + i) for i in range(len(extra))]


def read_clip_merges(path: Path) -> list[str]:
    """The merges of CLIP's BPE ("a b" lines) from bpe_simple_vocab_16e6.txt.gz or a wheel that holds it."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            names = [n for n in wheel.namelist() if n.endswith("bpe_simple_vocab_16e6.txt.gz")]
            if not names:
                raise SystemExit(f"{path} holds no bpe_simple_vocab_16e6.txt.gz")
            data = gzip.decompress(wheel.read(names[0]))
    else:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return data.decode("utf-8").split("\n")[1 : CLIP_MERGES + 1]


VOCAB_LICENSE = """The vocabulary and merges in this folder are a subset of OpenAI CLIP's BPE vocabulary
(bpe_simple_vocab_16e6.txt.gz, as shipped in the clip-anytorch 2.6.0 wheel), selected by scripts/train_t2i.py.

MIT License

Copyright (c) 2021 OpenAI

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def write_tokenizer_files(folder: Path, vocab: list[str], merges: Sequence[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "LICENSE.txt").write_text(VOCAB_LICENSE)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False) + "\n")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "do_lower_case": True,
        "clean_up_tokenization_spaces": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1) + "\n")


def full_vocab(merges: Sequence[str]) -> list[str]:
    byte_tokens = bytes_to_unicode()
    merged = [m.replace(" ", "") for m in merges]
    return [*byte_tokens, *(t + "</w>" for t in byte_tokens), *merged, "<|startoftext|>", "<|endoftext|>"]


def reduced_tokenizer(merges: list[str], words: str, folder: Path) -> CLIPTokenizer:
    """Write a CLIP tokenizer into ``folder`` whose merges are those ``words`` use (see the module docstring)."""
    ranks = {m: i for i, m in enumerate(merges)}
    used: set[str] = set()
    for piece in re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]+", words.lower()):  # CLIP's pre-split, for ASCII text
        used.update(bpe_applied(piece, ranks))
    kept = [m for m in merges if m in used]
    byte_tokens = bytes_to_unicode()
    vocab = [*byte_tokens, *(t + "</w>" for t in byte_tokens), *(m.replace(" ", "") for m in kept)]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    write_tokenizer_files(folder, vocab, kept)
    reduced = CLIPTokenizer.from_pretrained(folder)
    with tempfile.TemporaryDirectory() as tmp:
        write_tokenizer_files(Path(tmp), full_vocab(merges), merges)
        full = CLIPTokenizer.from_pretrained(tmp)
        for word in sorted(set(words.split())):
            if reduced.tokenize(word) != full.tokenize(word):
                raise SystemExit(
                    f"reduced vocabulary tokenises {word!r} as {reduced.tokenize(word)}, not as {full.tokenize(word)}"
                )
    return reduced


def bpe_applied(piece: str, ranks: dict[str, int]) -> list[str]:
    """The merges ("a b") byte-pair encoding applies to one pre-split piece, lowest rank first (CLIP's rule)."""
    symbols = [*piece[:-1], piece[-1] + "</w>"]
    applied = []
    while len(symbols) > 1:
        pairs = {f"{a} {b}" for a, b in itertools.pairwise(symbols)}
        best = min(pairs, key=lambda pair: ranks.get(pair, len(ranks)))
        if best not in ranks:
            break
        applied.append(best)
        first, second = best.split(" ")
        merged, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
                merged.append(first + second)
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return applied


# ------------------------------------------------------------------------------------------------ models


def make_unet(spec: T2ISpec, channels: int, sample_size: int) -> UNet2DConditionModel:
    levels = len(spec.block_out_channels)
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=channels,
        out_channels=channels,
        down_block_types=("DownBlock2D", *["CrossAttnDownBlock2D"] * (levels - 1)),
        up_block_types=(*["CrossAttnUpBlock2D"] * (levels - 1), "UpBlock2D"),
        block_out_channels=spec.block_out_channels,
        layers_per_block=1,
        cross_attention_dim=spec.text_width,
        attention_head_dim=spec.attention_heads,
        norm_num_groups=8,
        addition_embed_type="text",
        addition_embed_type_num_heads=4,
    )


def make_text_encoder(spec: T2ISpec, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.text_width,
        intermediate_size=2 * spec.text_width,
        num_hidden_layers=spec.text_layers,
        num_attention_heads=spec.text_heads,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def pipeline(vae: torch.nn.Module, text_encoder, tokenizer, unet) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler.from_config(SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ------------------------------------------------------------------------------------------------ metrics


@torch.no_grad()
def nearest_accuracy(
    pipe: StableDiffusionPipeline,
    captions: dict[str, Sequence[str]],
    photos: torch.Tensor,
    seeds: int,
    steps: int,
    guidance: float,
) -> dict[str, object]:
    """Sample each caption with ``seeds`` seeds; how often the nearest training photo is the captioned one."""
    per_caption: dict[str, float] = {}
    picked: dict[str, list[str]] = {}
    hits = total = 0
    for index, name in enumerate(T2I_PHOTOS):
        for caption in captions[name]:
            generators = [torch.Generator().manual_seed(s) for s in range(seeds)]
            latents = pipe(
                [caption] * seeds,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=generators,
                output_type="latent",
            ).images
            images = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample.clamp(-1, 1)
            nearest = nearest_photo(images, photos)
            correct = int((nearest == index).sum())
            per_caption[caption] = correct / seeds
            picked[caption] = [T2I_PHOTOS[i] for i in nearest.tolist()]
            hits += correct
            total += seeds
    return {"accuracy": hits / total, "chance": 1 / len(T2I_PHOTOS), "per_caption": per_caption, "nearest": picked}


# ----------------------------------------------------------------------------------------------- training


def _log(path: Path, message: str) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {message}"
    print(line, flush=True)
    with path.open("a") as file:
        file.write(line + "\n")


def lr_factor(spec: T2ISpec, step: int) -> float:
    if step < spec.warmup_steps:
        return (step + 1) / spec.warmup_steps
    progress = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    return spec.lr_final_fraction + (1 - spec.lr_final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


def train(spec: T2ISpec, tokenizer: CLIPTokenizer, log: Callable[[str], None]) -> tuple[dict, dict]:
    """Train one model; returns (its EMA components, the history)."""
    torch.manual_seed(spec.seed)
    vae = load_vae(spec.vae).module
    scale = float(vae.config.scaling_factor)
    photos = torch.cat([photo_tensor(name, T2I_SIZE) for name in T2I_PHOTOS])
    with torch.no_grad():
        latents = torch.cat([vae.encode(p[None]).latent_dist.mean for p in photos]) * scale  # model space
    channels, side = latents.shape[1], latents.shape[-1]
    unet = make_unet(spec, channels, side)
    text_encoder = make_text_encoder(spec, tokenizer)
    ema_unet, ema_text = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)
    params = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay, betas=(0.9, 0.99))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(spec, step))
    noise_scheduler = DDPMScheduler.from_config(SCHEDULER)
    alphas = noise_scheduler.alphas_cumprod
    snr = alphas / (1 - alphas)
    weights = snr.clamp(max=spec.min_snr_gamma) / (snr + 1)  # min-SNR-gamma for v-prediction
    with torch.no_grad():
        caption_ids = {
            name: tokenizer(list(CAPTIONS[name]), padding="max_length", max_length=77, return_tensors="pt").input_ids
            for name in T2I_PHOTOS
        }
        empty_ids = tokenizer([""], padding="max_length", max_length=77, return_tensors="pt").input_ids
    gen = torch.Generator().manual_seed(spec.seed)
    n = len(T2I_PHOTOS)
    history: dict[str, list] = {"loss": [], "eval": []}
    log(
        f"{spec.name}: unet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M, text encoder "
        f"{sum(p.numel() for p in text_encoder.parameters()) / 1e6:.3f} M, latents {tuple(latents.shape)} "
        f"(model-space std {float(latents.std()):.3f}), vocab {len(tokenizer)}"
    )
    started = time.perf_counter()
    running = 0.0
    for step in range(spec.steps):
        unet.train()
        text_encoder.train()
        order = torch.randperm(n, generator=gen)[: spec.batch_size] if spec.batch_size <= n else None
        which = order if order is not None else torch.randint(n, (spec.batch_size,), generator=gen)
        ids = []
        for photo in which.tolist():
            if float(torch.rand((), generator=gen)) < spec.caption_dropout:
                ids.append(empty_ids[0])
            else:
                options = caption_ids[T2I_PHOTOS[photo]]
                ids.append(options[int(torch.randint(len(options), (1,), generator=gen))])
        x0 = latents[which]
        noise = torch.randn(x0.shape, generator=gen)
        # Stratified timesteps: one in each of batch_size equal bins, in random order.
        bins = (torch.arange(spec.batch_size) + torch.rand(spec.batch_size, generator=gen)) / spec.batch_size
        t = (bins[torch.randperm(spec.batch_size, generator=gen)] * 1000).long().clamp(max=999)
        xt = noise_scheduler.add_noise(x0, noise, t)
        target = noise_scheduler.get_velocity(x0, noise, t)
        hidden = text_encoder(torch.stack(ids))[0]
        pred = unet(xt, t, hidden).sample
        loss = (weights[t] * F.mse_loss(pred, target, reduction="none").mean((1, 2, 3))).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        decay = min(spec.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for ema, live in ((ema_unet, unet), (ema_text, text_encoder)):
                for pe, pl in zip(ema.parameters(), live.parameters(), strict=True):
                    pe.lerp_(pl, 1 - decay)
        running += float(loss)
        if (step + 1) % 100 == 0:
            history["loss"].append([step + 1, round(running / 100, 5)])
            log(f"{spec.name} step {step + 1}: loss {running / 100:.4f}, {time.perf_counter() - started:.0f}s")
            running = 0.0
        if (step + 1) % spec.eval_every == 0 or step + 1 == spec.steps:
            quick = {k: v[:1] for k, v in CAPTIONS.items()}
            result = nearest_accuracy(pipeline(vae, ema_text, tokenizer, ema_unet), quick, photos, 4, 10, spec.guidance)
            history["eval"].append([step + 1, round(float(result["accuracy"]), 4)])
            log(f"{spec.name} step {step + 1}: quick nearest-photo accuracy {result['accuracy']:.3f} (chance 0.125)")
    history["train_seconds"] = round(time.perf_counter() - started, 1)
    return {"vae": vae, "unet": ema_unet, "text_encoder": ema_text, "photos": photos, "latents": latents}, history


def save_model(folder: Path, spec: T2ISpec, parts: dict, tokenizer_dir: Path) -> None:
    """Write the diffusers-style folder (fp16 weights); the VAE stays the zoo file (``zoo.t2i.T2I_MODELS``)."""
    folder.mkdir(parents=True, exist_ok=True)
    parts["unet"].to(torch.float16).save_pretrained(folder / "unet", safe_serialization=True)
    parts["text_encoder"].to(torch.float16).save_pretrained(folder / "text_encoder", safe_serialization=True)
    parts["unet"].float()
    parts["text_encoder"].float()
    (folder / "tokenizer").mkdir(exist_ok=True)
    for file in ("vocab.json", "merges.txt", "tokenizer_config.json", "LICENSE.txt"):
        (folder / "tokenizer" / file).write_bytes((tokenizer_dir / file).read_bytes())
    DDIMScheduler.from_config(SCHEDULER).save_pretrained(folder / "scheduler")
    for file in folder.rglob("*.safetensors"):
        file.chmod(0o644)  # save_pretrained writes 0600; package data is world-readable
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": importlib.metadata.version("diffusers"),
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "vae": [None, None],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=1) + "\n")


def plot(entries: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, entry in sorted(entries.items()):
        steps, losses = zip(*entry["curve"]["loss"], strict=True)
        left.plot(steps, losses, label=name)
        steps, accs = zip(*entry["curve"]["eval"], strict=True)
        right.plot(steps, accs, marker="o", label=name)
    left.set(xlabel="step", ylabel="min-SNR-weighted v loss (100-step mean)", yscale="log", title="training loss")
    right.axhline(1 / len(T2I_PHOTOS), color="grey", linestyle="--", label="chance (1/8)")
    right.set(
        xlabel="step",
        ylabel="nearest photo = captioned photo",
        ylim=(0, 1.05),
        title="quick check: 1 caption/photo, 4 seeds, 10 DDIM steps",
    )
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    path.write_bytes(buffer.getvalue())


def rounded(value: object) -> object:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip-bpe", type=Path, required=True, help="bpe_simple_vocab_16e6.txt.gz or a wheel with it")
    parser.add_argument("--only", nargs="*", choices=[s.name for s in T2I], help="train only these")
    parser.add_argument("--out", type=Path, default=ZOO_DIR, help="where the model folders and zoo.json go")
    parser.add_argument("--plot", type=Path, default=None, help="default: docs/t2i_training.png, or OUT/t2i.png")
    parser.add_argument("--log", type=Path, default=REPO / "train_t2i.log")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override T2ISpec fields")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    fields = {f.name: f.type for f in dataclasses.fields(T2ISpec)}
    overrides: dict[str, object] = {}
    for item in args.set:
        key, value = item.split("=", 1)
        if key not in fields:
            raise SystemExit(f"unknown field {key!r}; known: {', '.join(fields)}")
        overrides[key] = json.loads(value)
    specs = [dataclasses.replace(s, **overrides) for s in T2I if not args.only or s.name in args.only]

    def log(message: str) -> None:
        _log(args.log, message)

    merges = read_clip_merges(args.clip_bpe)
    words = " ".join([*(c for cs in CAPTIONS.values() for c in cs), *HELDOUT_CAPTIONS.values(), EXTRA_WORDS])
    args.out.mkdir(parents=True, exist_ok=True)
    index_path = args.out / "zoo.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"vaes": {}}
    entries: dict[str, dict] = dict(index.get("t2i", {}).get("models", {}))
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = reduced_tokenizer(merges, words, Path(tmp))
        log(f"tokenizer: {len(tokenizer)} tokens ({len(tokenizer) - 514} of CLIP's {CLIP_MERGES} merges)")
        for spec in specs:
            started = time.perf_counter()
            parts, history = train(spec, tokenizer, log)
            pipe = pipeline(parts["vae"], parts["text_encoder"], tokenizer, parts["unet"])
            results = {}
            for label, captions in (("train_captions", CAPTIONS), ("heldout_captions", HELDOUT_CAPTIONS)):
                caps = {k: (v,) if isinstance(v, str) else v for k, v in captions.items()}
                for guidance in (1.0, spec.guidance):
                    r = nearest_accuracy(pipe, caps, parts["photos"], spec.eval_seeds, spec.eval_steps, guidance)
                    results[f"{label}_guidance_{guidance:g}"] = r
                    log(f"{spec.name} {label} guidance {guidance:g}: accuracy {r['accuracy']:.3f} (chance 0.125)")
            # The fp16 weights that ship are evaluated too (the headline numbers).
            save_model(args.out / spec.name, spec, parts, Path(tmp))
            shipped_unet = UNet2DConditionModel.from_pretrained(args.out / spec.name / "unet")
            shipped_text = CLIPTextModel.from_pretrained(args.out / spec.name / "text_encoder")
            shipped = pipeline(parts["vae"], shipped_text.float(), tokenizer, shipped_unet.float())
            for label, captions in (("train_captions", CAPTIONS), ("heldout_captions", HELDOUT_CAPTIONS)):
                caps = {k: (v,) if isinstance(v, str) else v for k, v in captions.items()}
                r = nearest_accuracy(shipped, caps, parts["photos"], spec.eval_seeds, spec.eval_steps, spec.guidance)
                results[f"{label}_fp16_guidance_{spec.guidance:g}"] = r
                log(f"{spec.name} fp16 {label} guidance {spec.guidance:g}: accuracy {r['accuracy']:.3f}")
            sizes = {
                p.relative_to(args.out / spec.name).as_posix(): p.stat().st_size
                for p in sorted((args.out / spec.name).rglob("*"))
                if p.is_file()
            }
            settings = {k: v for k, v in dataclasses.asdict(spec).items() if k not in ("name", "vae", "seed")}
            settings.update(
                scheduler=SCHEDULER,
                threads=args.threads,
                torch=torch.__version__,
                diffusers=importlib.metadata.version("diffusers"),
                transformers=importlib.metadata.version("transformers"),
            )
            entries[spec.name] = rounded(
                {
                    "vae": spec.vae,
                    "seed": spec.seed,
                    "unet_parameters": sum(p.numel() for p in parts["unet"].parameters()),
                    "text_encoder_parameters": sum(p.numel() for p in parts["text_encoder"].parameters()),
                    "latent_shape": list(parts["latents"].shape[1:]),
                    "files_bytes": sizes,
                    "eval": results,
                    "curve": {"loss": history["loss"], "eval": history["eval"]},
                    "train_seconds": history["train_seconds"],
                    "wall_seconds": round(time.perf_counter() - started, 1),
                    "settings": settings,
                }
            )
            index["t2i"] = {
                "description": "tiny text-to-image models trained by scripts/train_t2i.py; they memorise 8 photos",
                "photos": list(T2I_PHOTOS),
                "eval": "per caption, 8 seeds (0-7), 20-step DDIM through StableDiffusionPipeline, decoded by the "
                "zoo VAE; nearest training photo by correlation of 16x16 area averages (zoo.t2i.nearest_photo); "
                "accuracy = fraction whose nearest photo is the captioned one; chance 1/8",
                "tokenizer": f"CLIP BPE (OpenAI, MIT) reduced to {len(tokenizer)} tokens: byte tokens, the merges the "
                "captions use, specials (scripts/train_t2i.py)",
                "models": dict(sorted(entries.items())),
            }
            tmp_index = index_path.with_suffix(".json.tmp")
            tmp_index.write_text(json.dumps(index, indent=1) + "\n")
            tmp_index.replace(index_path)
            log(f"{spec.name} done in {entries[spec.name]['wall_seconds']:.0f}s")
    plot_path = args.plot or (REPO / "docs" / "t2i_training.png" if args.out == ZOO_DIR else args.out / "t2i.png")
    plot(entries, plot_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
