"""From provenance to local files: :func:`which` (every piece of evidence and what it matches) and
:func:`resolve_vae` (the one VAE to decode with, and why — the function behind ``--vae auto``).

Evidence is tried strongest first: traced before merely listed; a VAE the workflow decoded with, then one it
encoded with, then one a program recorded, then a checkpoint whose baked-in VAE it used, then the checkpoint that
sampled the latent. A recorded hash decides over a name (a file of the right name whose hash differs is not used);
two different files that a name fits equally are an error, never a guess; a checkpoint without a baked-in VAE is
reported and skipped, never used. The built-in zoo VAEs count as library entries too (after the scanned ones).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from latentbridge.errors import LibraryError
from latentbridge.latent import Provenance
from latentbridge.library._db import LibraryEntry
from latentbridge.library._library import Library, NameMatch, distinct_files
from latentbridge.provenance import Evidence, ProvenanceReport, from_provenance, read_provenance
from latentbridge.weights.hashes import file_hashes

_RELATION_ORDER = {"decoded": 0, "encoded": 1, "recorded": 2, "sampled": 3, "listed": 4}
_VERB = {
    "decoded": "decoded it with",
    "encoded": "encoded it with",
    "recorded": "recorded",
    "sampled": "sampled it with",
    "listed": "lists",
}


def _rank(e: Evidence) -> tuple[int, int, int]:
    return (0 if e.traced else 1, _RELATION_ORDER[e.relation], 0 if e.role == "vae" else 1)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One piece of VAE-relevant evidence and what the library holds for it.

    Attributes:
        evidence: the fact from the file's metadata.
        entries: the library entries it matches (empty when none).
        how: how they matched ("sha256 735e4c3a44", "file name", …), "" when nothing matched.
        usable: the entries that can decode (a VAE with a decoder, a checkpoint with a baked-in VAE).
        problem: why a match cannot be used ("" when it can), e.g. a checkpoint without a VAE.
    """

    evidence: Evidence
    entries: tuple[LibraryEntry, ...]
    how: str
    usable: tuple[LibraryEntry, ...]
    problem: str = ""

    def sentence(self) -> str:
        """One line for humans."""
        e = self.evidence
        what = f"{e.source}: {e.role} {e.name or e.hash!r}"
        if not self.entries:
            return f"{what}: not in the library" + (f" ({self.problem})" if self.problem else "")
        where = "; ".join(x.path for x in self.entries[:3]) + (" …" if len(self.entries) > 3 else "")
        tail = f": cannot use it: {self.problem}" if self.problem else ""
        return f"{what}: found by {self.how} at {where}{tail}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "evidence": self.evidence.to_dict(),
            "how": self.how,
            "entries": [x.path for x in self.entries],
            "usable": [x.path for x in self.usable],
            "problem": self.problem,
        }


@dataclass(frozen=True, slots=True)
class Which:
    """What a file's provenance names and where the library has it.

    Attributes:
        source: the file read ("" for in-memory evidence).
        report: the provenance found.
        candidates: every VAE/checkpoint/model piece of evidence with its matches, strongest first.
    """

    source: str
    report: ProvenanceReport
    candidates: tuple[Candidate, ...]

    def lines(self) -> list[str]:
        """Human-readable lines."""
        if not self.candidates:
            return [*self.report.lines(), "nothing names a VAE, checkpoint or model file"]
        return [c.sentence() for c in self.candidates]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "source": self.source,
            "provenance": self.report.to_dict(),
            "candidates": [c.to_dict() for c in self.candidates],
        }


@dataclass(frozen=True, slots=True)
class ResolvedVAE:
    """The VAE ``--vae auto`` chose.

    Attributes:
        spec: what to pass as ``--vae`` / to ``load_vae`` (a path, or a zoo name).
        entry: the library entry.
        evidence: the piece of provenance it was chosen by.
        reasons: why, for humans ("the ComfyUI prompt decoded it with VAELoader 'sdxl_vae.safetensors'; found at
            …, sha256 …"), then anything else worth knowing (other evidence that disagrees, skipped candidates).
    """

    spec: str
    entry: LibraryEntry
    evidence: Evidence
    reasons: tuple[str, ...]

    @property
    def path(self) -> str:
        """The file (or folder) chosen."""
        return self.entry.path

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "spec": self.spec,
            "path": self.path,
            "entry": self.entry.to_dict(),
            "evidence": self.evidence.to_dict(),
            "reasons": list(self.reasons),
        }


@cache
def _zoo_entries() -> tuple[LibraryEntry, ...]:
    """The built-in zoo VAEs as library entries (hashed once per process)."""
    from latentbridge import zoo

    out = []
    for name in zoo.ZOO_NAMES:
        path = zoo.zoo_path(name)
        if not path.is_file():
            continue
        h = file_hashes(path)
        st = path.stat()
        out.append(
            LibraryEntry(
                path=str(path), root="built-in zoo", name=name, rel=name, folder="", size=st.st_size,
                mtime_ns=st.st_mtime_ns, kind="vae", has_vae=True, has_encoder=True, has_decoder=True,
                architecture="AutoencoderKL (latentbridge zoo)", format=name, formats=(name,), format_source="zoo",
                sha256=h.sha256, autov1=h.autov1, tensor_sha256=h.tensor_sha256, modelspec_hash="",
                modelspec_arch="", title=f"latentbridge zoo {name}", hf_repo="", note="built into latentbridge",
                scanned_at=0.0,
            )
        )  # fmt: skip
    return tuple(out)


def _zoo_match(e: Evidence) -> NameMatch:
    zoo = _zoo_entries()
    if e.hash:
        h = e.hash.lower()
        key = {"autov1": "autov1", "tensor_sha256": "tensor_sha256"}.get(e.hash_kind, "sha256")
        hits = tuple(z for z in zoo if getattr(z, key).startswith(h) if len(h) >= 8)
        return NameMatch(hits, f"{e.hash_kind or 'sha256'} {h} (built-in zoo)") if hits else NameMatch((), "")
    base = os.path.basename(e.name.replace("\\", "/"))
    hits = tuple(z for z in zoo if base in (z.name, f"{z.name}.safetensors"))
    return NameMatch(hits, "zoo name") if hits else NameMatch((), "")


def _usable(e: Evidence, entries: tuple[LibraryEntry, ...]) -> tuple[tuple[LibraryEntry, ...], str]:
    """The entries that can decode, and why the others cannot."""
    if e.role == "vae":
        ok = tuple(x for x in entries if x.has_vae and x.has_decoder)
        if ok:
            return ok, ""
        if any(x.has_vae for x in entries):
            return (), "it holds only the encoder half of the VAE; decoding needs the decoder"
        return (), f"latentbridge does not read it as a VAE ({entries[0].kind}: {entries[0].note or 'no VAE keys'})"
    if e.role == "checkpoint":
        ok = tuple(x for x in entries if x.has_vae and x.has_decoder)
        if ok:
            return ok, ""
        return (), (
            f"checkpoint {entries[0].name!r} has no baked-in VAE, so it cannot decode; the latent needs the separate "
            "VAE the workflow loaded (or the family's VAE)"
        )
    return (), f"{entries[0].name!r} is a diffusion model without a VAE: it names the family, not a decoder"


def _candidates(report: ProvenanceReport, library: Library) -> list[Candidate]:
    out = []
    for e in sorted(report.by_role("vae", "checkpoint", "model"), key=_rank):
        found = library.match(e)
        problem = ""
        if not found.entries and e.hash and e.name:  # a file of the recorded name whose content differs
            named = library.by_name(e.name)
            if named.entries:
                shown = ", ".join(f"{x.path} (sha256 {x.sha256[:10] or 'not hashed'})" for x in named.entries[:3])
                problem = (
                    f"files named {e.name!r} exist but none has the recorded {e.hash_kind} {e.hash}: {shown}; "
                    "they are other versions of the file"
                )
                if all(not x.sha256 for x in named.entries):  # scanned without hashes: the name is all there is
                    found, problem = (
                        NameMatch(named.entries, f"{named.how} (hash not checked: scanned with --no-hash)"),
                        "",
                    )
        if not found.entries and not problem:
            found = _zoo_match(e)
        if not found.entries:
            out.append(Candidate(e, (), "", (), problem))
            continue
        usable, why = _usable(e, found.entries)
        out.append(Candidate(e, found.entries, found.how, usable, why))
    return out


def _read(source: str | os.PathLike[str] | ProvenanceReport | Evidence | Provenance) -> tuple[str, ProvenanceReport]:
    if isinstance(source, ProvenanceReport):
        return "", source
    if isinstance(source, Evidence):
        return "", ProvenanceReport((source,), (), (source.source,))
    if isinstance(source, Provenance):
        return "", from_provenance(source)
    return os.fspath(source), read_provenance(Path(source))


def which(source: str | os.PathLike[str] | ProvenanceReport | Evidence | Provenance, library: Library) -> Which:
    """Every VAE, checkpoint and model file ``source`` names and where ``library`` has it.

    Args:
        source: a latent file or image (its provenance is read), a :class:`~latentbridge.provenance.ProvenanceReport`,
            one :class:`~latentbridge.provenance.Evidence`, or a latent's latentbridge
            :class:`~latentbridge.latent.Provenance`.
        library: the library to look in.
    """
    name, report = _read(source)
    return Which(name, report, tuple(_candidates(report, library)))


def _reason(c: Candidate, chosen: LibraryEntry) -> str:
    e = c.evidence
    step = f" ({e.via[-1]})" if e.via else ""
    recorded = f" {e.hash_kind} {e.hash}" if e.hash else ""
    what = f"{e.role} {e.name!r}" if e.name else f"{e.role}{recorded}"
    baked = "the VAE baked into " if e.role == "checkpoint" else ""
    sha = f"sha256 {chosen.sha256}" if chosen.sha256 else "not hashed"
    return (
        f"the {e.source} {_VERB[e.relation]} {baked}{what}{step}{recorded if e.name else ''}; found at {chosen.path} "
        f"(matched by {c.how}), {sha}"
    )


def resolve_vae(
    source: str | os.PathLike[str] | ProvenanceReport | Evidence | Provenance, library: Library
) -> ResolvedVAE:
    """The local VAE that ``source``'s provenance says decodes it (``--vae auto``), with the reasons.

    Args:
        source: as for :func:`which`.
        library: where to look (plus the built-in zoo).

    Returns:
        The chosen :class:`ResolvedVAE`.

    Raises:
        LibraryError: nothing usable matches (the message lists what was looked for and what stood in the way), or
            the strongest evidence fits several different files equally.
        FileFormatError: ``source`` is a file that cannot be read.
    """
    found = which(source, library)
    notes = [
        f"skipped {c.evidence.role} {c.evidence.name or c.evidence.hash!r}: {c.problem}"
        for c in found.candidates
        if not c.usable and c.problem
    ]
    usable = [c for c in found.candidates if c.usable]
    if not usable:
        raise LibraryError(_nothing(found, library, notes))
    strongest = [c for c in usable if _rank(c.evidence)[:2] == _rank(usable[0].evidence)[:2]]
    for c in strongest:
        groups = distinct_files(c.usable)
        if len(groups) > 1:
            shown = "; ".join(f"{g[0].path} (sha256 {g[0].sha256[:12] or 'not hashed'})" for g in groups[:4])
            raise LibraryError(
                f"--vae auto: {c.evidence.source} names {c.evidence.role} {c.evidence.name!r}, and {len(groups)} "
                f"different files match it by {c.how}: {shown}; latentbridge will not guess: pass --vae FILE, or "
                "remove the copies you do not use and rescan"
            )
    groups = distinct_files(x for c in strongest for x in c.usable)
    if len(groups) > 1:
        shown = "; ".join(f"{c.evidence.sentence()} -> {c.usable[0].path}" for c in strongest[:4])
        raise LibraryError(
            f"--vae auto: the provenance names {len(groups)} different files equally strongly ({shown}); "
            "latentbridge will not guess: pass --vae FILE"
        )
    c = usable[0]
    chosen = sorted(groups[0], key=lambda x: (x.root == "built-in zoo", x.path))[0]
    reasons = [_reason(c, chosen)]
    if len(groups[0]) > 1:
        reasons.append(f"{len(groups[0])} identical copies are indexed; using {chosen.path}")
    for other in usable[len(strongest) :]:
        if other.evidence.traced and all(x.sha256 != chosen.sha256 or not x.sha256 for x in other.usable):
            reasons.append(
                f"note: the {other.evidence.source} also names {other.evidence.role} {other.evidence.name!r} "
                f"({other.usable[0].path}, {other.evidence.relation}), a different file"
            )
    spec = chosen.name if chosen.root == "built-in zoo" else chosen.path
    return ResolvedVAE(spec, chosen, c.evidence, tuple(reasons + notes))


def _looked_for(candidates: tuple[Candidate, ...]) -> str:
    """What was looked for, one entry per file named ("vae 'x.safetensors' (ComfyUI prompt: decoded, encoded)")."""
    named: dict[tuple[str, str, str, str], list[str]] = {}
    for c in candidates:
        e = c.evidence
        named.setdefault((e.role, e.name, e.hash_kind, e.hash), [])
        named[(e.role, e.name, e.hash_kind, e.hash)].append(f"{e.source}: {e.relation}")
    out = []
    for (role, name, kind, digest), where in named.items():
        parts = [role, repr(name) if name else "", f"{kind} {digest}" if digest else ""]
        sources: dict[str, list[str]] = {}
        for w in where:
            src, _, rel = w.partition(": ")
            sources.setdefault(src, []).append(rel)
        said = "; ".join(f"{src}, {', '.join(dict.fromkeys(rels))}" for src, rels in sources.items())
        out.append(" ".join(p for p in parts if p) + f" ({said})")
    return "; ".join(out)


def _nothing(found: Which, library: Library, notes: list[str]) -> str:
    where = found.source or "the given provenance"
    counts = library.counts()
    held = f"{counts.get('vae', 0)} VAEs and {counts.get('checkpoint', 0)} checkpoints"
    fix = f"scan the folders your models are in (`latentbridge library scan DIR --home {library.home}`)"
    fix += " or pass --vae FILE"
    if not found.candidates:
        sources = ", ".join(found.report.sources) or "no provenance metadata"
        gaps = "; ".join(g.reason for g in found.report.gaps[:3])
        return (
            f"--vae auto: {where} names no VAE or checkpoint (read: {sources}{'; ' + gaps if gaps else ''}); "
            "pass --vae FILE"
        )
    looked = _looked_for(found.candidates)
    why = f"; {'; '.join(notes)}" if notes else ""
    return (
        f"--vae auto: no usable local file for {where}: looked for {looked}{why}. The library at {library.home} holds "
        f"{held}; {fix}"
    )
