"""AUTOMATIC1111 / Forge / SD.Next generation parameters ("infotext"), as stored in a PNG ``parameters`` text chunk
(or a JPEG/WebP EXIF UserComment).

The layout A1111 writes (``modules/processing.py`` ``create_infotext``; read back by
``modules/infotext_utils.py`` ``parse_generation_parameters``)::

    <prompt, possibly over several lines>
    Negative prompt: <negative prompt, possibly over several lines>
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 512x768, Model hash: 6ce0161689,
    Model: v1-5-pruned-emaonly, VAE hash: 735e4c3a44, VAE: vae-ft-mse-840000-ema-pruned.safetensors, Version: v1.10.1

(the settings are one line). A value holding a comma, colon or newline is written as a JSON string
(``infotext_utils.quote``). "Model" is the checkpoint's name without its extension, folders joined by "_"
(``CheckpointInfo.model_name``); "Model hash" is its sha256's first 10 hex digits (8 digits of the old AutoV1
hash in files from before that existed); "VAE" is the VAE file's name with its extension and "VAE hash" its
sha256's first 10 digits, both written only when a separate VAE file was loaded (``sd_vae.get_loaded_vae_name``
returns None otherwise). Like A1111, the last line is the settings line when it holds at least three
``key: value`` pairs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from latentbridge.provenance._model import Evidence, Gap, ProvenanceReport

SOURCE = "A1111 parameters"
MAX_CHARS = 1_000_000  # an infotext is a few KB; prompts of a megabyte are not parameters
_KEY = re.compile(r"\s*([^\s,:\"][^,:\"]*?)\s*:\s*")
_HASH = re.compile(r"[0-9a-fA-F]{8,64}")
_SHOWN = ("Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Denoising strength", "Version")


@dataclass(frozen=True, slots=True)
class A1111Parameters:
    """One parsed infotext.

    Attributes:
        prompt: the positive prompt (its lines joined with newlines).
        negative_prompt: the negative prompt ("" when absent).
        settings: the settings line's (key, value) pairs in order, JSON-quoted values unquoted.
    """

    prompt: str
    negative_prompt: str
    settings: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str:
        """The value of setting ``key`` ("" when absent)."""
        return next((v for k, v in self.settings if k == key), "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"prompt": self.prompt, "negative_prompt": self.negative_prompt, "settings": dict(self.settings)}


def _settings(line: str) -> list[tuple[str, str]]:
    """The ``key: value`` pairs of one settings line (an unquoted value runs to the next comma)."""
    pairs: list[tuple[str, str]] = []
    pos, n = 0, len(line)
    while pos < n:
        m = _KEY.match(line, pos)
        if m is None:
            return pairs if pos >= n or not line[pos:].strip(" ,") else []
        key, pos = m.group(1), m.end()
        if line.startswith('"', pos):
            value, end = _quoted(line, pos)
            if value is None:
                return []
            pos = end
        else:
            end = line.find(",", pos)
            end = n if end < 0 else end
            value, pos = line[pos:end].strip(), end
        pairs.append((key, value))
        rest = line[pos:].lstrip()
        if rest.startswith(","):
            pos = n - len(rest) + 1
        elif rest:
            return []  # text after a quoted value that is not a separator: not a settings line
        else:
            pos = n
    return pairs


def _quoted(line: str, pos: int) -> tuple[str | None, int]:
    """A JSON string starting at ``pos``: (its value, the index after it), or (None, pos)."""
    i = pos + 1
    while i < len(line):
        if line[i] == "\\":
            i += 2
            continue
        if line[i] == '"':
            try:
                return str(json.loads(line[pos : i + 1])), i + 1
            except ValueError:
                return line[pos + 1 : i], i + 1
        i += 1
    return None, pos


def parse_parameters(text: str) -> A1111Parameters:
    """Parse an A1111/Forge/SD.Next infotext (see the module docstring for the layout).

    Never raises on odd text: a text without a settings line is all prompt.
    """
    lines = text.strip().replace("\r\n", "\n").split("\n")
    settings = _settings(lines[-1]) if lines else []
    if len(settings) >= 3:
        lines = lines[:-1]
    else:
        settings = []
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        if not negative and line.strip().startswith("Negative prompt:"):
            negative.append(line.strip()[len("Negative prompt:") :].strip())
        elif negative:
            negative.append(line.strip())
        else:
            prompt.append(line.strip())
    return A1111Parameters("\n".join(prompt), "\n".join(negative), tuple(settings))


def _hash_of(value: str) -> tuple[str, str]:
    """(hash, kind) of a recorded "Model hash"/"VAE hash": 8 digits are the old AutoV1, longer ones sha256 digits."""
    value = value.strip().lower()
    if not _HASH.fullmatch(value):
        return "", ""
    return value, "autov1" if len(value) == 8 else "sha256"


def read_parameters(text: Any) -> ProvenanceReport:
    """Evidence from an infotext: the checkpoint ("Model", "Model hash") that sampled the image and the VAE
    ("VAE", "VAE hash") that decoded it; without a "VAE" the checkpoint's own baked VAE decoded it."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", errors="replace")
    if not isinstance(text, str):
        return ProvenanceReport(
            gaps=(Gap(SOURCE, f"parameters is a {type(text).__name__}, not text"),), sources=(SOURCE,)
        )
    if len(text) > MAX_CHARS:
        return ProvenanceReport(
            gaps=(Gap(SOURCE, f"parameters text of {len(text):,} characters is too long"),), sources=(SOURCE,)
        )
    p = parse_parameters(text)
    evidence: list[Evidence] = []
    gaps: list[Gap] = []
    model, model_hash = p.get("Model"), _hash_of(p.get("Model hash"))
    vae, vae_hash = p.get("VAE"), _hash_of(p.get("VAE hash"))
    if model or model_hash[0]:
        evidence.append(Evidence("checkpoint", "sampled", SOURCE, model, *model_hash, via=("Model", "Model hash")))
    modules = [v for k, v in p.settings if re.fullmatch(r"Module \d+", k)]
    if vae or vae_hash[0]:
        evidence.append(Evidence("vae", "decoded", SOURCE, vae, *vae_hash, via=("VAE", "VAE hash")))
    elif modules:
        gaps.append(
            Gap(
                SOURCE,
                f"no VAE named, and extra modules are ({', '.join(modules)}): which of them decoded the image "
                "is not stated",
            )
        )
    elif model or model_hash[0]:
        evidence.append(
            Evidence(
                "checkpoint",
                "decoded",
                SOURCE,
                model,
                *model_hash,
                via=("Model", "Model hash"),
                note="no VAE named: A1111 and Forge write 'VAE' only when a separate VAE file was loaded, so the "
                "checkpoint's own VAE decoded the image (unless the add_vae_name_to_info option was off)",
            )
        )
    if not p.settings:
        gaps.append(Gap(SOURCE, "no settings line (Steps: …, Model: …) found: only a prompt"))
    facts = [(k.lower(), v) for k, v in p.settings if k in _SHOWN]
    if p.prompt:
        facts.append(("prompt", p.prompt if len(p.prompt) <= 200 else p.prompt[:199] + "…"))
    if p.negative_prompt:
        neg = p.negative_prompt
        facts.append(("negative prompt", neg if len(neg) <= 200 else neg[:199] + "…"))
    return ProvenanceReport(tuple(evidence), tuple(gaps), (SOURCE,), tuple(facts))
