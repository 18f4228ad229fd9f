"""Build the reference profiles shipped in ``src/latentbridge/profiles.json``.

Measured profiles: every training photo (``latentbridge.photos.TRAIN_PHOTOS``) is cut into random crops at
128, 256 and 384 px (4 crops per photo and size, random scale and flip, seeded) and encoded by every encoder
that runs offline here — the zoo VAEs (raw), VAElight's SD1 encoder (raw, ONNX) and TAEF2's encoder (FLUX.2
model space before packing; packed to 128 ch here). Held-out photos are never used: they are for
``benchmarks/bench_identify.py``.

Published profiles: pooled per-channel statistics that models normalise with (Playground v2.5's SDXL-VAE
mean/std, Wan 2.1, Wan 2.2, Mochi), with image-to-image spreads transferred from the measured profiles.

Calibration, leave-one-photo-out on the training photos: each photo's latents are identified against profiles
built without that photo (the other families' profiles are complete: they never saw this encoder's latents),
and the softmax temperature is the one minimising the log loss; the fit threshold is 1.5× the 99th
percentile of the true profile's mean squared z-score. The natural-image reference for preflight is measured
on the training photos at 1/8 resolution; the threshold of preflight's decode→encode cycle test is the largest
relative cycle ratio of the training photos' own latents over the true autoencoder pairs (zoo, TAEF2).

Usage::

    python scripts/build_profiles.py                 # about 2-4 min on 2 cores
    python scripts/build_profiles.py --zoo-dir /tmp/zoo-try --out /tmp/profiles.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from latentbridge import _format_data as D  # noqa: E402
from latentbridge.checks import image_scores  # noqa: E402
from latentbridge.fingerprint import family_log_prior, identify  # noqa: E402
from latentbridge.formats import formats, get_format, raw_to_model  # noqa: E402
from latentbridge.photos import TRAIN_PHOTOS, load_photo  # noqa: E402
from latentbridge.profiles import (  # noqa: E402
    CALIBRATION_SIZES,
    DATA_FILE,
    JOINT_SHRINK,
    Calibration,
    Features,
    Population,
    Profile,
    Transfer,
    build_profile,
    latent_features,
    native_profile_space,
    profile_from_published,
    profile_set,
    sample_crops,
)
from latentbridge.vae import VAE, from_autoencoder_kl  # noqa: E402

WEIGHTS = REPO.parent / "shared" / "weights"
CROPS_PER_SIZE = 4
SEED = 20240


# ------------------------------------------------------------------------------------------- encoders


@dataclass(frozen=True)
class Encoder:
    """An encoder that runs here: its VAE value, and the (format, space) its latents are profiled in."""

    name: str
    vae: VAE
    format: str
    space: str
    pack: bool


def photo_image(name: str) -> torch.Tensor:
    """A bundled photo as [3, H, W] float32 in [-1, 1] (full size)."""
    array = load_photo(name).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _zoo_vae(path: Path, name: str) -> VAE:
    from diffusers import AutoencoderKL
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    config = json.loads(meta["config"])
    model = AutoencoderKL(**config)
    model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()}, strict=True)
    fmt = formats().get(name)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return from_autoencoder_kl(model.eval(), name=name, fmt=fmt, sha256=sha, architecture="autoencoder_kl")


def _vaelight_vae(path: Path) -> VAE:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def encode(images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"input": images.float().numpy()})[0])

    return VAE("vaelight-sd1", "", "vaelight", get_format("sd1"), "raw", 4, 8, 2, encode, None)


def _taef2_vae(path: Path) -> VAE | None:
    try:
        from latentbridge.weights import load_vae  # the weights package (TAEF2 model) may not exist yet
    except ImportError:
        return None
    return load_vae(str(path), format="flux2", part="encoder")


def encoders(zoo_dir: Path, weights: Path, log: Callable[[str], None]) -> list[Encoder]:
    """Every encoder that can run: zoo-a/b/c from ``zoo_dir``, VAElight SD1 and TAEF2 from ``weights``."""
    out = []
    for name in ("zoo-a", "zoo-b", "zoo-c"):
        path = zoo_dir / f"{name}.safetensors"
        if path.is_file():
            out.append(Encoder(name, _zoo_vae(path, name), name, "raw", False))
        else:
            log(f"skip {name}: {path} not found")
    light = weights / "vaelight-sd1" / "VAEencoder.onnx"
    if light.is_file():
        out.append(Encoder("vaelight-sd1", _vaelight_vae(light), "sd1", "raw", False))
    else:
        log(f"skip VAElight: {light} not found")
    taef2 = weights / "taef2" / "taef2_encoder.pth"
    vae = _taef2_vae(taef2) if taef2.is_file() else None
    if vae is not None:
        space, pack = native_profile_space(get_format("flux2"), vae.native_space, vae.channels)
        out.append(Encoder("taef2", vae, "flux2", space, pack))
    else:
        log("skip TAEF2: latentbridge.weights.load_vae or the weight file is not available")
    return out


@torch.no_grad()
def encode_photos(
    enc: Encoder, photos: Iterable[str], sizes: Iterable[int], crops: int, seed: int, cache: Path | None = None
) -> dict[str, list[torch.Tensor]]:
    """photo -> latents [crops, C, h, w] per size, in the encoder's profile space (packed if needed).

    ``cache``: a folder where the latents are kept between runs, keyed by encoder, weights hash, photos, sizes,
    crops and seed (a development convenience; the results are identical either way).
    """
    from latentbridge.formats import pack

    photos, sizes = list(photos), list(sizes)
    path = None
    if cache is not None:
        key = json.dumps([enc.name, enc.vae.sha256, photos, sizes, crops, seed, enc.pack])
        path = cache / f"{enc.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
        if path.is_file():
            return torch.load(path, weights_only=True)
    out: dict[str, list[torch.Tensor]] = {}
    for index, photo in enumerate(photos):
        image = photo_image(photo)
        generator = torch.Generator().manual_seed(seed + 7919 * index)
        latents = []
        for size in sizes:
            z = enc.vae.encode(sample_crops(image, size, crops, generator)).float()
            latents.append(pack(z, 2) if enc.pack else z)
        out[photo] = latents
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(out, path)
    return out


def to_model(enc: Encoder, z: torch.Tensor) -> torch.Tensor | None:
    """The model-space version of a raw latent of the encoder's format (None when not derivable)."""
    fmt = get_format(enc.format)
    if enc.space != "raw" or fmt.patch != 1 or fmt.norm_source == "vae":
        return None
    return raw_to_model(z, fmt)


# ------------------------------------------------------------------------------------------ profiles


@dataclass(frozen=True)
class PhotoStats:
    """Features and pooled sums of one photo's latents (so that leave-one-photo-out profiles are cheap)."""

    features: list[Features]
    sums: torch.Tensor  # [C] sum of values
    squares: torch.Tensor  # [C] sum of squared values
    count: int


def photo_stats(latents: dict[str, list[torch.Tensor]]) -> dict[str, PhotoStats]:
    out = {}
    for photo, zs in latents.items():
        feats = [f for z in zs for f in latent_features(z)]
        flat = torch.cat([z.double().transpose(0, 1).reshape(z.shape[1], -1) for z in zs], 1)
        out[photo] = PhotoStats(feats, flat.sum(1), flat.square().sum(1), flat.shape[1])
    return out


def measured_profile(enc: Encoder, stats: dict[str, PhotoStats], skip: str = "") -> Profile:
    """The profile of an encoder's latents over every photo except ``skip``."""
    chosen = [s for photo, s in stats.items() if photo != skip]
    feats: list[Features] = [f for s in chosen for f in s.features]
    count = sum(s.count for s in chosen)
    mean = sum(s.sums for s in chosen) / count
    std = (sum(s.squares for s in chosen) / count - mean.square()).clamp_min(0).sqrt()
    fmt = get_format(enc.format)
    ratio = fmt.space_shape(enc.space)[1]
    return build_profile(
        feats,
        format=enc.format,
        space=enc.space,
        spatial_ratio=ratio,
        dims=2,
        kind="measured",
        source=f"{enc.name}: {len(chosen)} training photos × sizes {list(CALIBRATION_SIZES)} × {CROPS_PER_SIZE} "
        f"crops ({len(feats)} latents)",
        pooled_mean=mean.tolist(),
        pooled_std=std.tolist(),
        vae_sha256=enc.vae.sha256,
    )


def fit_transfer(measured: list[Profile]) -> Transfer:
    """Image-to-image spreads relative to pooled stds, medians over the measured raw-space channels."""
    mean_ratio, within, logstd = [], [], []
    for p in measured:
        if p.mean is None or p.logstd is None:
            continue
        s = np.asarray(p.pooled_std)
        mean_ratio.extend(np.asarray(p.mean.spread) / s)
        within.extend(np.exp(np.asarray(p.logstd.center)) / s)
        logstd.extend(p.logstd.spread)
    corr = []
    for p in measured:
        if p.joint_corr:
            c = p.channels
            block = np.asarray(p.joint_corr).reshape(2 * c, 2 * c)[c:, c:]
            corr.extend(block[np.triu_indices(c, 1)] / (1 - JOINT_SHRINK))  # undo the stored shrinkage
    return Transfer(
        mean_spread=float(np.median(mean_ratio)),
        within=float(np.median(within)),
        logstd_spread=float(np.median(logstd)),
        logstd_corr=float(np.median(corr)) if corr else 0.0,
    )


def fit_population(measured: list[Profile]) -> Population:
    """Scalar centre/spread of corr and slope features over the measured profiles (centres and spreads)."""
    out = {}
    for group in ("corr", "slope"):
        centers, spreads = [], []
        for p in measured:
            stat = p.stat(group)
            if stat is not None:
                centers.extend(stat.center)
                spreads.extend(stat.spread)
        c = np.asarray(centers)
        out[group] = (float(c.mean()), float(np.sqrt(c.var() + np.mean(np.square(spreads)))))
    return Population(out["corr"][0], out["corr"][1], out["slope"][0], out["slope"][1])


def published_profiles(transfer: Transfer) -> list[Profile]:
    """Profiles from pooled statistics that models normalise with."""
    table = [
        ("sdxl", D.PLAYGROUND25_MEAN, D.PLAYGROUND25_STD, "Playground v2.5 latents_mean/std of SDXL-VAE raw latents"),
        ("wan21", D.WAN21_MEAN, D.WAN21_STD, "Wan 2.1 vae latents_mean/std"),
        ("wan22", D.WAN22_MEAN, D.WAN22_STD, "Wan 2.2 TI2V-5B vae latents_mean/std"),
        ("mochi", D.MOCHI_MEAN, D.MOCHI_STD, "Mochi 1 vae latents_mean/std"),
    ]
    return [
        profile_from_published(get_format(name), mean, std, source, transfer, space="raw")
        for name, mean, std, source in table
    ]


# ---------------------------------------------------------------------------------------- calibration


def lopo_rows(
    encs: list[Encoder],
    latents: dict[str, dict[str, list[torch.Tensor]]],
    base: list[Profile],
    calib: Calibration,
) -> list[dict]:
    """Leave-one-photo-out identification rows: per latent, every candidate's loglik and the true label."""
    rows = []
    for enc in encs:
        stats = photo_stats(latents[enc.name])
        for photo in latents[enc.name]:
            held = measured_profile(enc, stats, skip=photo)
            others = [p for p in base if p.key != held.key]
            profiles = profile_set([*others, held], include_builtin=False)
            for z in latents[enc.name][photo]:
                for space, tensor in (
                    ("raw", z) if enc.space == "raw" else (enc.space, z),
                    ("model", to_model(enc, z)),
                ):
                    if tensor is None:
                        continue
                    for item in tensor.split(1):
                        ident = identify(item, profiles=profiles, calib=calib)
                        truth = (enc.format, space if enc.space == "raw" else enc.space)
                        rows.append(
                            {
                                "encoder": enc.name,
                                "photo": photo,
                                "size": int(item.shape[-1]) * get_format(enc.format).space_shape(truth[1])[1],
                                "truth": truth,
                                "labels": [(c.format, c.space) for c in ident.candidates],
                                "loglik": [c.loglik for c in ident.candidates],
                                "distance": [c.distance for c in ident.candidates],
                            }
                        )
    return rows


def _probs(loglik: list[float], temperature: float, labels: list[tuple[str, str]]) -> np.ndarray:
    """The probabilities identify() gives: softmax of loglik / T plus the prior over latent spaces."""
    v = np.asarray(loglik) / temperature + family_log_prior([tuple(label) for label in labels])
    p = np.exp(v - v.max())
    return p / p.sum()


def fit_temperature(rows: list[dict]) -> tuple[float, dict]:
    """The temperature minimising the mean log loss of the true label (only rows with a choice)."""
    useful = [r for r in rows if len(r["labels"]) > 1 and r["truth"] in r["labels"]]
    grid = np.exp(np.linspace(math.log(0.05), math.log(500), 400))

    def loss(t: float) -> float:
        return float(
            np.mean(
                [
                    -math.log(max(_probs(r["loglik"], t, r["labels"])[r["labels"].index(r["truth"])], 1e-12))
                    for r in useful
                ]
            )
        )

    losses = [loss(t) for t in grid]
    best = float(grid[int(np.argmin(losses))])
    report = {"rows": len(useful), "log_loss_T1": round(loss(1.0), 4), "log_loss": round(min(losses), 4)}
    report.update(reliability(useful, best))
    return best, report


def reliability(rows: list[dict], temperature: float) -> dict:
    """Accuracy and mean confidence of the top candidate, overall and per confidence bin."""
    conf, correct = [], []
    for r in rows:
        p = _probs(r["loglik"], temperature, r["labels"])
        i = int(np.argmax(p))
        conf.append(float(p[i]))
        correct.append(r["labels"][i] == r["truth"])
    conf_a, correct_a = np.asarray(conf), np.asarray(correct, dtype=float)
    bins = []
    for lo, hi in ((0.0, 0.6), (0.6, 0.8), (0.8, 0.9), (0.9, 0.99), (0.99, 1.01)):
        m = (conf_a >= lo) & (conf_a < hi)
        if m.any():
            bins.append(
                {
                    "range": [lo, min(hi, 1.0)],
                    "n": int(m.sum()),
                    "mean_confidence": round(float(conf_a[m].mean()), 4),
                    "accuracy": round(float(correct_a[m].mean()), 4),
                }
            )
    return {
        "accuracy": round(float(correct_a.mean()), 4),
        "mean_confidence": round(float(conf_a.mean()), 4),
        "bins": bins,
    }


# --------------------------------------------------------------------------------------- cycle test


def autoencoders(encs: list[Encoder], weights: Path) -> dict[str, VAE]:
    """Encoders whose decoder was trained with them (a true autoencoder pair): the zoo and TAEF2.

    VAElight's encoder and decoder approximate SD1's two halves separately, so they are no pair and do not
    calibrate the decode→encode cycle test.
    """
    out = {enc.name: enc.vae for enc in encs if enc.vae.encode is not None and enc.vae.decode is not None}
    enc_file, dec_file = weights / "taef2" / "taef2_encoder.pth", weights / "taef2" / "taef2_decoder.pth"
    if any(enc.name == "taef2" for enc in encs) and dec_file.is_file():
        from latentbridge.weights import load_vae

        out["taef2"] = load_vae([str(enc_file), str(dec_file)], format="flux2")
    return out


def cycle_calibration(
    encs: list[Encoder], latents: dict[str, dict[str, list[torch.Tensor]]], weights: Path, log: Callable[[str], None]
) -> dict:
    """Threshold of preflight's decode→encode test: the largest relative cycle ratio of an own latent.

    For every true autoencoder pair, the first crop of every training photo at 128 and 256 px: its cycle ratio
    (latentbridge.checks.cycle_ratio) divided by the VAE's reference ratio on the bundled reference photos at the
    same size (cycle_reference). The threshold is the maximum over all of them: with n own latents, a new one
    exceeds the largest with probability about 1/(n+1).
    """
    from latentbridge.checks import CYCLE_PHOTOS, cycle_ratio, cycle_reference

    relative: dict[str, list[float]] = {}
    refs: dict[str, dict[int, float]] = {}
    for name, vae in autoencoders(encs, weights).items():
        refs[name] = {}
        for index, size in enumerate(CALIBRATION_SIZES[:2]):
            cells = size // vae.spatial_ratio
            refs[name][size] = ref = cycle_reference(vae, cells)
            for zs in latents[name].values():
                relative.setdefault(name, []).append(cycle_ratio(zs[index][:1], vae)[2] / ref)
        log(f"cycle test {name}: reference {refs[name]}, relative ratios median {np.median(relative[name]):.3f}")
    if not relative:
        return {}
    pooled = [r for rs in relative.values() for r in rs]
    return {
        "threshold": round(float(max(pooled)), 4),
        "method": "largest cycle ratio of an own latent (first crop per training photo at 128 and 256 px) relative "
        f"to the VAE's ratio on {', '.join(CYCLE_PHOTOS)}, over {', '.join(relative)}",
        "samples": len(pooled),
        "per_vae": {
            name: {
                "reference": {str(k): round(v, 4) for k, v in refs[name].items()},
                "median": round(float(np.median(rs)), 4),
                "max": round(float(max(rs)), 4),
            }
            for name, rs in relative.items()
        },
    }


# ----------------------------------------------------------------------------------------------- main


def natural_reference(photos: Iterable[str], seed: int) -> dict:
    """Image scores of training-photo crops at 1/8 resolution (what a decode, pooled to latent size, resembles)."""
    generator = torch.Generator().manual_seed(seed)
    scores = []
    for photo in photos:
        image = photo_image(photo)
        for size in CALIBRATION_SIZES:
            crops = (sample_crops(image, size, CROPS_PER_SIZE, generator) + 1) / 2
            small = torch.nn.functional.avg_pool2d(crops, 8)
            scores.extend(image_scores(small))
    keys = scores[0].keys()
    return {
        "source": f"training photos, {len(scores)} crops at 128/256/384 px, average-pooled 8×",
        "samples": {k: [round(s[k], 5) for s in scores] for k in keys},
    }


def preview_reference(encs: list[Encoder], latents: dict[str, dict[str, list[torch.Tensor]]]) -> dict:
    """Image scores of each measured family's rgb previews of its own training latents (what "right" looks like)."""
    from latentbridge.checks import rgb_preview_of

    out = {}
    for enc in encs:
        fmt = get_format(enc.format)
        if not fmt.rgb_factors:
            continue
        scores = []
        for zs in latents[enc.name].values():
            for z in zs:
                if min(z.shape[-2:]) < 8:
                    continue
                model = z if enc.space == "model" else to_model(enc, z)
                if model is None:
                    continue
                scores.extend(image_scores(rgb_preview_of(model, fmt)))
        if scores:
            out[fmt.name] = {
                "source": f"rgb previews of {len(scores)} {enc.name} latents of the training photos",
                "samples": {k: [round(s[k], 5) for s in scores] for k in scores[0]},
            }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo-dir", type=Path, default=REPO / "src" / "latentbridge" / "zoo")
    parser.add_argument("--weights", type=Path, default=WEIGHTS)
    parser.add_argument("--out", type=Path, default=REPO / "src" / "latentbridge" / DATA_FILE)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=None, help="keep encoded latents here between runs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", flush=True)

    encs = encoders(args.zoo_dir, args.weights, log)
    latents = {}
    for enc in encs:
        latents[enc.name] = encode_photos(enc, TRAIN_PHOTOS, CALIBRATION_SIZES, CROPS_PER_SIZE, SEED, args.cache)
        log(f"encoded {enc.name}: {sum(len(v) for v in latents[enc.name].values())} batches")
    measured = [measured_profile(enc, photo_stats(latents[enc.name])) for enc in encs]
    raw_measured = [p for p in measured if p.space == "raw"]
    transfer = fit_transfer(raw_measured)
    population = fit_population(measured)
    published = published_profiles(transfer)
    log(f"transfer {transfer}; population {population}")
    base = [*published, *measured]
    uncalibrated = Calibration(1.0, math.inf, transfer, population, {})
    rows = lopo_rows(encs, latents, base, uncalibrated)
    temperature, report = fit_temperature(rows)
    true_dist = [r["distance"][r["labels"].index(r["truth"])] for r in rows if r["truth"] in r["labels"]]
    q99 = float(np.quantile(true_dist, 0.99))
    report.update(true_distance_median=round(float(np.median(true_dist)), 4), true_distance_q99=round(q99, 4))
    log(f"temperature {temperature:.3f}, fit threshold {1.5 * q99:.3f}: {report}")
    cycle = cycle_calibration(encs, latents, args.weights, log)
    log(f"cycle threshold {cycle.get('threshold')}")
    data = {
        "schema": 1,
        "description": "latentbridge reference profiles (scripts/build_profiles.py): measured on the training photos "
        "by every encoder that runs offline, and published statistics with transferred spreads",
        "calibration": {
            "temperature": round(temperature, 5),
            "fit_threshold": round(1.5 * q99, 4),
            "transfer": {
                "mean_spread": round(transfer.mean_spread, 5),
                "within": round(transfer.within, 5),
                "logstd_spread": round(transfer.logstd_spread, 5),
                "logstd_corr": round(transfer.logstd_corr, 5),
            },
            "population": {
                "corr_center": round(population.corr_center, 5),
                "corr_spread": round(population.corr_spread, 5),
                "slope_center": round(population.slope_center, 5),
                "slope_spread": round(population.slope_spread, 5),
            },
            "report": report,
            "method": "leave-one-photo-out over the training photos; softmax(loglik / T + log prior over latent "
            "spaces); T minimises log loss",
            "cycle": cycle,
        },
        "natural": {**natural_reference(TRAIN_PHOTOS, SEED + 1), "previews": preview_reference(encs, latents)},
        "profiles": [p.to_dict() for p in base],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=None, separators=(",", ":")) + "\n")
    tmp.replace(args.out)
    log(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
