"""Request and response bodies. Responses are the results' own ``to_dict()`` forms, described here so that the
OpenAPI schema is real; every model allows extra fields, so a result that gains a field passes it through (the page
renders findings generically from their dicts and the catalogue)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Open(BaseModel):
    """A result's ``to_dict()``: the fields below, and any the result gains later."""

    model_config = ConfigDict(extra="allow")


Number = float | int | None
MaybeInf = float | int | str | None  # to_dict writes inf as "inf" and NaN as None


# --- the results' to_dict() forms ---------------------------------------------------------------------------


class FindingOut(Open):
    code: str
    severity: Literal["info", "warn", "error"]
    evidence_kind: str = Field(description="fact, provenance, vae-test or statistics")
    message: str
    fix: str
    evidence: dict[str, Any]


class FindingKindOut(Open):
    code: str
    title: str
    severities: list[str]
    evidence_kind: str
    evidence_keys: list[str]


class LatentFactsOut(Open):
    shape: list[int]
    layout: str
    format: str
    format_source: str
    space: str
    space_source: str


class VaeIdentityOut(Open):
    name: str
    sha256: str
    architecture: str
    format: str | None
    native_space: str
    channels: int
    spatial_ratio: int
    dims: int
    has_encoder: bool
    has_decoder: bool
    candidates: list[str]


class CandidateOut(Open):
    format: str
    space: str
    label: str
    spatial_ratio: int
    probability: float
    profile: str
    profile_kind: str
    also: list[str]
    unpacked: bool
    loglik: Number = None
    distance: Number = None
    fits: bool | None = None


class IdentificationOut(Open):
    summary: str
    geometry: str
    shape: list[int]
    channels: int
    dims: int
    confident: bool
    candidates: list[CandidateOut]
    shape_only: list[CandidateOut]
    groups: list[str]
    temperature: Number
    fit_threshold: Number
    flags: list[str]
    evidence: dict[str, Any]
    layout_hints: list[str]
    frames: int


class IdentifyOut(IdentificationOut):
    file: str
    recorded: str
    read_notes: list[str]


class ReportOut(Open):
    verdict: Literal["ok", "warn", "error"]
    exit_code: int
    latent: LatentFactsOut
    vae: VaeIdentityOut
    findings: list[FindingOut]
    identification: IdentificationOut | None
    preflight: list[dict[str, Any]]


class LatentFileOut(Open):
    file: str
    container: str
    writer: str
    key: str | None
    entries: list[dict[str, Any]]
    shape: list[int]
    dtype: str
    layout: str
    space: str
    format: str | None
    provenance: dict[str, Any]
    metadata: dict[str, Any]
    other: dict[str, Any]
    notes: list[str]


class WeightsInfoOut(Open):
    path: str
    file: str
    container: str
    size: int
    architecture: str | None
    title: str
    checkpoint: bool
    has_vae: bool
    has_encoder: bool
    has_decoder: bool
    latent_channels: int | None
    spatial_ratio: int | None
    dims: int | None
    native_space: str | None
    dtype: str
    parameters: int
    formats: list[str]
    format: str | None
    format_source: str
    sha256: str
    known_file: str
    metadata: dict[str, Any]
    matches: list[str]
    notes: list[str]


class InspectOut(Open):
    kind: Literal["latent", "weights", "image"]
    name: str
    latent: LatentFileOut | None = None
    stats: dict[str, Any] | None = Field(default=None, description="latent_stats: overall and per channel")
    provenance_found: dict[str, Any] | None = None
    weights: WeightsInfoOut | None = None


class FormatOut(Open):
    name: str
    title: str
    aliases: list[str]
    channels: int
    spatial_ratio: int
    dims: int
    scale: float
    shift: float
    size_multiple: int
    model_channels: int
    model_spatial_ratio: int
    layout: str
    sources: dict[str, Any]


class ComparisonCandidateOut(Open):
    name: str
    sha256: str
    format: str | None
    psnr_db: MaybeInf
    colourfulness: Number
    dynamic_range: Number
    relabelled: bool
    verdict: str | None
    findings: list[str]
    error: str


class ComparisonOut(Open):
    reference: str
    item: int
    frame: int
    candidates: list[ComparisonCandidateOut]


class FidelityRowOut(Open):
    method: str
    psnr: MaybeInf
    ssim: MaybeInf
    seconds_per_latent: MaybeInf
    image_psnr: MaybeInf
    image_ssim: MaybeInf
    note: str


class LibraryEntryOut(Open):
    path: str
    name: str
    kind: str
    architecture: str
    format: str
    formats: list[str]
    sha256: str
    autov2: str
    size: int


class ScanReportOut(Open):
    roots: list[str]
    found: int
    added: int
    updated: int
    unchanged: int
    removed: int
    hashed: int
    hashed_bytes: int
    errors: list[dict[str, str]]
    skipped: list[str]
    seconds: float
    cancelled: bool


# --- the service's own values -------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    type: str = Field(description="the error class (FileFormatError, IncompatibleError …) or the HTTP error")
    message: str = Field(description="what was found, what was expected, and the fix: the CLI's text")
    status: int


class ErrorOut(BaseModel):
    error: ErrorBody


class UploadOut(BaseModel):
    id: str
    name: str
    size: int
    sha256: str
    kind: Literal["latent", "weights", "image", "unknown"]
    note: str
    created: float


class RootOut(BaseModel):
    index: int
    name: str


class BrowseEntry(BaseModel):
    name: str
    path: str
    dir: bool
    size: int


class JobFile(BaseModel):
    name: str
    media_type: str
    url: str


class JobOut(BaseModel):
    id: str
    kind: str
    state: Literal["queued", "running", "done", "error", "cancelled"]
    created: float
    started: float | None
    finished: float | None
    progress: dict[str, Any] | None = Field(description="the last progress event: task, done, total")
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: ErrorBody | None
    warnings: list[str] = Field(description="what the library did on the job's behalf (automatic tiling …)")
    files: list[JobFile]
    events: str = Field(description="the server-sent-events stream of this job")


class VaeChoice(BaseModel):
    """A VAE the page can offer: a zoo name or a library entry."""

    ref: dict[str, str]
    label: str
    format: str | None
    kind: str


class InfoOut(BaseModel):
    version: str
    roots: list[RootOut]
    library: bool
    max_upload_bytes: int
    workers: int
    token_required: bool
    vaes: list[VaeChoice]
    vae_cache: dict[str, Any]


# --- requests -----------------------------------------------------------------------------------------------


class FileRef(BaseModel):
    """A file: an upload's id, or a path relative to one of the server's ``--root`` folders."""

    model_config = ConfigDict(extra="forbid")
    upload: str | None = Field(default=None, max_length=64, description="the id POST /api/files returned")
    path: str | None = Field(default=None, max_length=4096, description="relative to root number `root`")
    root: int = Field(default=0, ge=0, le=1024)

    @model_validator(mode="after")
    def _one(self) -> FileRef:
        if (self.upload is None) == (self.path is None):
            raise ValueError("name a file by exactly one of 'upload' (an upload's id) or 'path' (under a root)")
        return self


class VaeRef(BaseModel):
    """A VAE: a zoo name, an upload, a path under a root, or a library entry (its sha256 or path)."""

    model_config = ConfigDict(extra="forbid")
    zoo: str | None = Field(default=None, max_length=64, description="zoo-a, zoo-b or zoo-c")
    upload: str | None = Field(default=None, max_length=64)
    path: str | None = Field(default=None, max_length=4096)
    root: int = Field(default=0, ge=0, le=1024)
    library: str | None = Field(default=None, max_length=4096, description="an entry's sha256 or path")
    format: str | None = Field(
        default=None, max_length=64, description="the format it serves, when the file cannot tell"
    )

    @model_validator(mode="after")
    def _one(self) -> VaeRef:
        named = [x for x in (self.zoo, self.upload, self.path, self.library) if x is not None]
        if len(named) != 1:
            raise ValueError("name a VAE by exactly one of 'zoo', 'upload', 'path' or 'library'")
        return self


class ReadOptions(BaseModel):
    """How to read the latent file (the CLI's --key, --format, --space, --layout, --grid)."""

    model_config = ConfigDict(extra="forbid")
    key: str | None = Field(default=None, max_length=256)
    format: str | None = Field(default=None, max_length=64)
    space: Literal["raw", "model"] | None = None
    layout: str | None = Field(default=None, max_length=8)
    grid: str | None = Field(default=None, max_length=16, description="ROWSxCOLUMNS for a token sequence")


class RunOptions(BaseModel):
    """The CLI's execution options (the device is the server's --device)."""

    model_config = ConfigDict(extra="forbid")
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    batch_size: int = Field(default=1, ge=1, le=64)
    tile: int | None = Field(default=None, ge=16, le=8192)
    overlap: int | None = Field(default=None, ge=0, le=4096)
    tile_passes: int = Field(default=2, ge=1, le=4)
    max_memory: int | None = Field(default=None, ge=1 << 20, description="bytes; tiling turns on past it")
    channels_last: bool = False


class InspectIn(ReadOptions):
    file: FileRef


class IdentifyIn(ReadOptions):
    latent: FileRef


class CheckIn(ReadOptions):
    latent: FileRef
    vae: VaeRef
    preflight: bool = False


class PreviewIn(ReadOptions):
    latent: FileRef
    method: Literal["auto", "rgb", "fitted", "tiny"] = "auto"
    vae: VaeRef | None = Field(default=None, description="a tiny decoder for method tiny")
    upscale: int = Field(default=1, ge=1, le=16)


class DecodeIn(ReadOptions):
    latent: FileRef
    vae: VaeRef
    force: bool = Field(default=False, description="decode even when the check finds an error")
    no_crop: bool = False
    run: RunOptions = RunOptions()


class CompareIn(ReadOptions):
    latent: FileRef
    vaes: list[VaeRef] = Field(min_length=1, max_length=8)
    reference: FileRef | None = Field(default=None, description="an image to measure PSNR against")
    item: int = Field(default=0, ge=0)
    frame: int = Field(default=0, ge=0)
    run: RunOptions = RunOptions()


class TransferIn(ReadOptions):
    latent: FileRef
    from_vae: VaeRef
    to_vae: VaeRef
    refine: int = Field(default=0, ge=0, le=200, description="refinement steps through the target decoder")
    out_space: Literal["raw", "model"] | None = None
    fit: Literal["pad", "crop"] | None = None
    report: bool = Field(default=False, description="measure fidelity (PSNR/SSIM) of the transfer")
    run: RunOptions = RunOptions()


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    latents: list[FileRef] = Field(min_length=1, max_length=16)
    vaes: list[VaeRef] = Field(default_factory=list, max_length=8)
    title: str = Field(default="latentbridge report", max_length=200)
    format: str | None = Field(default=None, max_length=64)
    space: Literal["raw", "model"] | None = None
    key: str | None = Field(default=None, max_length=256)
    grid: str | None = Field(default=None, max_length=16)
    run: RunOptions = RunOptions()


class ScanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dirs: list[FileRef] = Field(min_length=1, max_length=32, description="folders under the roots (path refs)")
    hash: bool = True
