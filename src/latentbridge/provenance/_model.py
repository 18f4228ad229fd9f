"""The values provenance readers return: pieces of evidence, the gaps that could not be traced, and a report.

Nothing here reads files or parses formats; the readers (``_comfy``, ``_a1111``, ``_records``) build these.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

# What a piece of evidence names.
ROLES: dict[str, str] = {
    "vae": "a VAE file",
    "checkpoint": "a checkpoint file (its baked-in VAE, or its model)",
    "model": "a diffusion model file without a VAE (UNet/DiT only)",
    "text_encoder": "a text-encoder file",
    "family": "a latent family (a registered format name)",
}
# How what it names relates to the latent (or to the image the file holds).
RELATIONS: dict[str, str] = {
    "decoded": "decoded this latent (or the image in this file)",
    "encoded": "encoded the pixels this latent was made from",
    "sampled": "denoised this latent",
    "recorded": "recorded as this latent's VAE or family by the program that wrote the file",
    "listed": "named in the file but not traced to this latent",
}
# Which hash a recorded hash is.
HASH_KINDS: dict[str, str] = {
    "sha256": "sha256 of the whole file (or its first digits: A1111/Civitai AutoV2 is the first 10)",
    "autov1": "A1111's old model hash: sha256 of 64 KiB at offset 1 MiB, 8 digits (Civitai AutoV1)",
    "tensor_sha256": "sha256 of a safetensors file's tensor data (modelspec.hash_sha256, sd-scripts sshs_model_hash)",
}
MAX_VIA = 12  # trace steps kept in a piece of evidence (the first 4 and the last 8 of a longer chain)


def clip_via(via: tuple[str, ...]) -> tuple[str, ...]:
    """A trace path shortened to :data:`MAX_VIA` steps (head and tail kept, the middle counted)."""
    if len(via) <= MAX_VIA:
        return via
    return (*via[:4], f"… {len(via) - MAX_VIA} more steps …", *via[-(MAX_VIA - 4) :])


@dataclass(frozen=True, slots=True)
class Evidence:
    """One fact a file's metadata states about the files that made (or should decode) a latent.

    Attributes:
        role: what it names — a key of :data:`ROLES` ("vae", "checkpoint", "model", "text_encoder", "family").
        relation: how that relates to the latent — a key of :data:`RELATIONS`; "listed" means named in the file
            but not traced to this latent.
        source: where the fact came from: "ComfyUI prompt", "ComfyUI workflow", "A1111 parameters",
            "latentbridge record", "modelspec", "musubi-tuner cache", "sd-scripts cache name", "ai-toolkit cache".
        name: the file (or folder) name as recorded ("sdxl_vae.safetensors", "SDXL/sdxl_vae.safetensors",
            A1111's extension-less "v1-5-pruned-emaonly"); for role "family" the registry format name.
        hash: the recorded hash, lower-case hex without "0x" ("" when none).
        hash_kind: which hash (a key of :data:`HASH_KINDS`), "" when there is no hash.
        via: how it was found, step by step ("SaveLatent #9 samples", "KSampler #3 latent_image", …).
        note: anything a reader should know (a TAESD name, a baked VAE, why a default applies).
    """

    role: str
    relation: str
    source: str
    name: str = ""
    hash: str = ""
    hash_kind: str = ""
    via: tuple[str, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown evidence role {self.role!r}: expected one of {', '.join(ROLES)}")
        if self.relation not in RELATIONS:
            raise ValueError(f"unknown evidence relation {self.relation!r}: expected one of {', '.join(RELATIONS)}")
        if self.hash_kind not in ("", *HASH_KINDS):
            raise ValueError(f"unknown hash kind {self.hash_kind!r}: expected one of {', '.join(HASH_KINDS)}")

    @property
    def traced(self) -> bool:
        """True when the metadata ties this file to the latent itself (not merely listed)."""
        return self.relation != "listed"

    @property
    def key(self) -> tuple[str, str, str, str, str, str]:
        """What makes two pieces of evidence the same fact (the trace path aside)."""
        return (self.role, self.relation, self.source, self.name, self.hash, self.hash_kind)

    def sentence(self) -> str:
        """One line for humans: "ComfyUI prompt: VAELoader #10 loaded vae 'sdxl_vae.safetensors', which encoded …"."""
        what = repr(self.name) if self.name else "(no name)"
        if self.hash:
            what += f" ({self.hash_kind} {self.hash})"
        step = f" [{' ← '.join(self.via)}]" if self.via else ""
        note = f"; {self.note}" if self.note else ""
        return f"{self.source}: {self.role} {what} {RELATIONS[self.relation]}{step}{note}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (empty fields omitted)."""
        out: dict[str, Any] = {"role": self.role, "relation": self.relation, "source": self.source}
        for name in ("name", "hash", "hash_kind", "note"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        if self.via:
            out["via"] = list(self.via)
        return out


@dataclass(frozen=True, slots=True)
class Gap:
    """Something a reader found but could not follow, and why (an unknown node, a muted node, a cycle, bad JSON)."""

    source: str
    reason: str
    via: tuple[str, ...] = ()

    def sentence(self) -> str:
        """One line for humans."""
        step = f" [{' ← '.join(self.via)}]" if self.via else ""
        return f"{self.source}: cannot trace: {self.reason}{step}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out: dict[str, Any] = {"source": self.source, "reason": self.reason}
        if self.via:
            out["via"] = list(self.via)
        return out


@dataclass(frozen=True, slots=True)
class ProvenanceReport:
    """Everything the provenance readers found in one file (or in-memory metadata).

    Attributes:
        evidence: the facts, traced ones first, in the order found.
        gaps: what could not be traced, each with its reason.
        sources: the metadata read ("ComfyUI prompt", "A1111 parameters", …), in the order read.
        facts: other recorded settings worth showing (seed, steps, sampler, size, prompt), as (name, value) text.
    """

    evidence: tuple[Evidence, ...] = ()
    gaps: tuple[Gap, ...] = ()
    sources: tuple[str, ...] = ()
    facts: tuple[tuple[str, str], ...] = field(default=())

    @property
    def found(self) -> bool:
        """True when any evidence was found."""
        return bool(self.evidence)

    def by_role(self, *roles: str, traced: bool | None = None) -> tuple[Evidence, ...]:
        """The evidence naming any of ``roles`` (all roles when none given), optionally only (un)traced."""
        return tuple(
            e for e in self.evidence if (not roles or e.role in roles) and (traced is None or e.traced == traced)
        )

    def families(self) -> tuple[str, ...]:
        """The latent families (format names) the evidence states, without repeats."""
        return tuple(dict.fromkeys(e.name for e in self.evidence if e.role == "family" and e.name))

    def merge(self, *others: ProvenanceReport) -> ProvenanceReport:
        """One report holding this one's and ``others``' findings; repeated facts are kept once."""
        seen: dict[tuple[str, ...], Evidence] = {}
        gaps: dict[tuple[str, str], Gap] = {}
        sources: dict[str, None] = {}
        facts: dict[str, str] = {}
        for rep in (self, *others):
            for e in rep.evidence:
                seen.setdefault(e.key, e)
            for g in rep.gaps:
                gaps.setdefault((g.source, g.reason), g)
            sources.update(dict.fromkeys(rep.sources))
            for k, v in rep.facts:
                facts.setdefault(k, v)
        ordered = sorted(seen.values(), key=lambda e: not e.traced)  # stable: traced first, order kept
        return ProvenanceReport(tuple(ordered), tuple(gaps.values()), tuple(sources), tuple(facts.items()))

    def with_source(self, source: str) -> ProvenanceReport:
        """A copy that also lists ``source`` as read."""
        return replace(self, sources=tuple(dict.fromkeys((*self.sources, source))))

    def lines(self) -> list[str]:
        """Human-readable lines: each piece of evidence, then each gap, then the facts."""
        if not self.sources:
            return [
                "no provenance metadata (no ComfyUI prompt/workflow, A1111 parameters, modelspec, trainer or "
                "latentbridge record)"
            ]
        out = [e.sentence() for e in self.evidence]
        out += [g.sentence() for g in self.gaps]
        out += [f"{k}: {v}" for k, v in self.facts]
        if not self.evidence:
            out.insert(0, f"read {', '.join(self.sources)}: no VAE, checkpoint, model or family named")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "sources": list(self.sources),
            "evidence": [e.to_dict() for e in self.evidence],
            "gaps": [g.to_dict() for g in self.gaps],
            "facts": dict(self.facts),
        }
