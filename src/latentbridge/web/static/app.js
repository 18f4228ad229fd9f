// latentbridge's page: plain DOM, no build step, no library. Every answer is a result's own to_dict() form;
// findings are drawn generically from their dicts and the catalogue (GET /api/findings), so a field a result
// gains later shows up without a change here.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { latent: null, latentName: "", vae: null, info: null, findings: {}, facts: null, ident: null };
const KNOWN_FINDING_KEYS = new Set(["code", "severity", "evidence_kind", "message", "fix", "evidence"]);
const KNOWN_REPORT_KEYS = new Set(["verdict", "exit_code", "latent", "vae", "findings", "identification", "preflight"]);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fill(id, ...children) {
  const node = $(id);
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined));
  return node;
}

function say(id, text, isError) {
  const node = $(id);
  node.textContent = text;
  node.classList.toggle("error", Boolean(isError));
}

function num(value, digits = 4) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(digits);
  return String(value);
}

function show(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") return num(value);
  if (typeof value === "string") return value;
  if (Array.isArray(value) && value.every((v) => typeof v === "number")) return "[" + value.map((v) => num(v, 3)).join(", ") + "]";
  const text = JSON.stringify(value);
  return text.length > 300 ? text.slice(0, 299) + "…" : text;
}

class ApiError extends Error {}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, init);
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError((data && data.error && data.error.message) || response.statusText);
  return data;
}

async function upload(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  const response = await fetch("/api/files", { method: "POST", body: form });
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError((data && data.error && data.error.message) || response.statusText);
  return data;
}

function follow(job, bar, label) {
  // The job's server-sent events: progress moves the bar; the last event carries the finished job.
  return new Promise((resolve) => {
    const source = new EventSource(job.events);
    source.addEventListener("progress", (event) => {
      const p = JSON.parse(event.data);
      bar.max = p.total || 1;
      bar.value = Math.min(p.done, bar.max);
      label.textContent = `${p.task}: ${p.done} of ${p.total || "?"} steps`;
    });
    for (const end of ["done", "error", "cancelled"]) {
      source.addEventListener(end, (event) => { source.close(); resolve(JSON.parse(event.data)); });
    }
    source.onerror = () => { source.close(); api(`/api/jobs/${job.id}`).then(resolve, () => resolve(job)); };
  });
}

async function runJob(kind, body, prefix) {
  const bar = $(`${prefix}-progress`), label = $(`${prefix}-status`);
  bar.value = 0;
  say(`${prefix}-status`, "queued …");
  const job = await api(`/api/jobs/${kind}`, body);
  const done = await follow(job, bar, label);
  if (done.state === "done") { bar.value = bar.max; return done; }
  const message = done.error ? done.error.message : `the ${kind} ended as ${done.state}`;
  throw new ApiError(message);
}

// --- the VAE choices ------------------------------------------------------------------------------------------
function vaeChoices() {
  const out = [];
  for (const option of $("vae-select").options) if (option.value) out.push({ ref: JSON.parse(option.value), label: option.textContent });
  return out;
}

function addVaeChoice(ref, label, select) {
  const value = JSON.stringify(ref);
  let option = [...$("vae-select").options].find((o) => o.value === value);
  if (!option) { option = el("option", { value, text: label }); $("vae-select").append(option); }
  if (select) $("vae-select").value = value;
  refreshChoices();
}

function refreshChoices() {
  const choices = vaeChoices();
  fill("compare-vaes", el("legend", { class: "sub", text: "decode with each of these, side by side" }),
    choices.map((c, i) => el("label", {}, el("input", { type: "checkbox", value: JSON.stringify(c.ref), id: `cmp-${i}`,
      checked: i < 3 }), " ", c.label)));
  const target = $("transfer-target"), previous = target.value;
  target.replaceChildren(...choices.map((c) => el("option", { value: JSON.stringify(c.ref), text: c.label })));
  if (previous && [...target.options].some((o) => o.value === previous)) target.value = previous;
  else {  // another VAE than the one the latent is decoded with
    const other = [...target.options].find((o) => o.value !== $("vae-select").value);
    if (other) target.value = other.value;
  }
}

// --- what the file is -----------------------------------------------------------------------------------------
function factsTable(facts) {
  const rows = [];
  if (facts.kind === "latent") {
    const l = facts.latent, o = facts.stats.overall;
    rows.push(["file", l.file], ["container", l.container + (l.writer ? ` (${l.writer})` : "")],
      ["shape", `[${l.shape.join(", ")}] (${l.layout})`], ["dtype", l.dtype],
      ["format", l.format || "unknown (see identify)"], ["space", l.space], ["NaN / inf", `${o.nan} / ${o.inf}`]);
    for (const [k, v] of Object.entries(l.provenance || {})) rows.push([`provenance.${k}`, show(v)]);
    for (const note of l.notes || []) rows.push(["note", note]);
  } else if (facts.kind === "weights") {
    const w = facts.weights;
    rows.push(["file", w.file], ["architecture", w.title || "unknown"], ["format", w.format || (w.formats || []).join(" or ") || "unknown"],
      ["latent", `${w.latent_channels} ch / ${w.spatial_ratio}× (${w.native_space})`], ["parameters", num(w.parameters)]);
  }
  return el("table", { class: "facts" }, rows.map(([k, v]) => el("tr", {}, el("td", { class: "k", text: k }), el("td", { class: "v", text: v }))));
}

function statsTable(stats) {
  const head = el("tr", {}, ["channel", "mean", "std", "min", "max"].map((h) => el("th", { class: h === "channel" ? "" : "n", text: h })));
  const rows = stats.channels.map((c) => el("tr", {}, el("td", { text: c.channel }),
    ["mean", "std", "min", "max"].map((k) => el("td", { class: "n", text: num(c[k]) }))));
  return el("details", {}, el("summary", { text: `per-channel statistics (${stats.channels.length} channels)` }), el("table", {}, head, rows));
}

async function showFacts() {
  const facts = await api("/api/inspect", { file: state.latent });
  state.facts = facts;
  fill("facts", factsTable(facts), facts.stats ? statsTable(facts.stats) : null);
  return facts;
}

function bars(candidates) {
  return el("div", { class: "bars", role: "list", "aria-label": "identify candidates" }, candidates.slice(0, 8).map((c) => {
    const fill = el("div", { class: "fill" });
    fill.style.width = `${Math.max(0, Math.min(100, 100 * c.probability))}%`;
    const fits = c.fits === false ? " (no fit)" : "";
    return el("div", { class: `bar${c.fits === false ? " nofit" : ""}`, role: "listitem" },
      el("span", { text: c.label + fits }),
      el("div", { class: "track", role: "img", "aria-label": `${c.label}: ${(100 * c.probability).toFixed(1)} %` }, fill),
      el("span", { class: "p", text: `${(100 * c.probability).toFixed(1)} %` }));
  }));
}

async function showIdentify() {
  const ident = await api("/api/identify", { latent: state.latent });
  state.ident = ident;
  const parts = [el("p", {}, el("b", { text: ident.summary })), el("p", { class: "sub", text: ident.geometry })];
  if (ident.candidates.length) parts.push(bars(ident.candidates));
  if (ident.shape_only.length) parts.push(el("p", { class: "sub", text: "possible by shape, no profile: " + ident.shape_only.map((c) => c.label).join(", ") }));
  for (const hint of ident.layout_hints) parts.push(el("p", { class: "sub", text: `other layout: ${hint}` }));
  if (ident.recorded) parts.push(el("p", { class: "sub", text: `the file records: ${ident.recorded}` }));
  fill("identify", parts);
  return ident;
}

function readOptions() {
  // A bare latent: preview it as the confident identification says (the page tells which).
  const l = state.facts && state.facts.latent;
  if (l && !l.format && state.ident && state.ident.confident) {
    const best = state.ident.candidates[0];
    return { format: best.format, space: best.space, why: `read as ${best.label}, the identified format` };
  }
  return { why: "" };
}

async function showPreview() {
  const l = state.facts.latent, options = readOptions();
  if (!l.format && !options.format) {
    fill("preview", el("p", { class: "note", text: "no preview: the file records no format and identify is not confident; pick a VAE to check it" }));
    return;
  }
  const width = l.shape[l.layout.indexOf("W")] || 64;
  const body = { latent: state.latent, upscale: Math.max(1, Math.min(16, Math.ceil(256 / width))) };
  if (options.format) { body.format = options.format; body.space = options.space; }
  const response = await fetch("/api/preview", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    throw new ApiError((data && data.error && data.error.message) || response.statusText);
  }
  const url = URL.createObjectURL(await response.blob());
  const why = decodeURIComponent(response.headers.get("X-Preview") || "");
  fill("preview", el("figure", {}, el("img", { id: "preview-image", class: "pic pixelated", src: url, alt: "preview of the latent" }),
    el("figcaption", { text: [why, options.why].filter(Boolean).join("; ") })));
}

// --- the check ------------------------------------------------------------------------------------------------
function findingCard(f) {
  const kind = state.findings[f.code];
  const evidence = Object.entries(f.evidence || {});
  const extra = Object.entries(f).filter(([k]) => !KNOWN_FINDING_KEYS.has(k));
  const dl = evidence.length || extra.length ? el("dl", {},
    [...evidence, ...extra].map(([k, v]) => [el("dt", { text: k.replaceAll("_", " ") }), el("dd", { text: show(v) })])) : null;
  return el("article", { class: `card ${f.severity}`, "data-code": f.code },
    el("h4", {}, el("span", { class: `badge ${f.severity}`, text: f.severity }), el("span", { text: kind ? kind.title : f.code }),
      el("code", { text: f.code }), el("span", { class: "badge kind", text: `evidence: ${f.evidence_kind}` })),
    el("p", { text: f.message }),
    f.fix ? el("p", { class: "fix" }, el("b", { text: "fix: " }), f.fix) : null,
    dl);
}

function renderReport(report) {
  const lat = report.latent, vae = report.vae;
  const parts = [
    el("p", { class: "row" }, el("span", { id: "verdict", class: `verdict ${report.verdict}`, text: report.verdict }),
      el("span", { text: `latent [${lat.shape.join(", ")}] ${lat.layout}, format ${lat.format || "unknown"} (${lat.format_source}), space ${lat.space} (${lat.space_source}) × VAE ${vae.name} (${vae.format || "format unknown"}, ${vae.channels} ch / ${vae.spatial_ratio}×, ${vae.native_space})` })),
    el("div", { class: "cards", id: "findings" }, report.findings.map(findingCard)),
  ];
  if (!report.findings.length) parts.push(el("p", { class: "note", text: "no findings" }));
  const extra = Object.entries(report).filter(([k]) => !KNOWN_REPORT_KEYS.has(k));
  if (extra.length) parts.push(el("dl", {}, extra.map(([k, v]) => [el("dt", { text: k.replaceAll("_", " ") }), el("dd", { text: show(v) })])));
  fill("check", parts);
}

async function runCheck() {
  $("check-panel").hidden = false;
  fill("check", el("p", { class: "status", text: "checking …" }));
  const report = await api("/api/check", { latent: state.latent, vae: state.vae });
  renderReport(report);
  return report;
}

// --- decode ---------------------------------------------------------------------------------------------------
let decodeJob = null;

async function runDecode(force) {
  $("decode-panel").hidden = false;
  $("decode-button").disabled = true;
  $("decode-cancel").disabled = false;
  fill("decode-out");
  try {
    const body = { latent: state.latent, vae: state.vae, force: Boolean(force) };
    const bar = $("decode-progress"), label = $("decode-status");
    bar.value = 0;
    say("decode-status", "queued …");
    decodeJob = await api("/api/jobs/decode", body);
    const done = await follow(decodeJob, bar, label);
    if (done.state !== "done") throw new ApiError(done.error ? done.error.message : `the decode ended as ${done.state}`);
    bar.value = bar.max;
    const notes = (done.warnings || []).map((w) => `; ${w}`).join("");
    say("decode-status", `decoded with ${done.result.vae.name}: ${done.result.shape.join(" × ")}${notes}`);
    fill("decode-out", done.files.map((f) => el("figure", {}, el("img", { id: "decoded-image", class: "pic", src: f.url, alt: `decoded image ${f.name}` }),
      el("figcaption", {}, el("a", { href: f.url, download: f.name, text: `download ${f.name}` })))));
  } catch (error) {
    say("decode-status", error.message, true);
  } finally {
    decodeJob = null;
    $("decode-button").disabled = false;
    $("decode-cancel").disabled = true;
  }
}

// --- the flow -------------------------------------------------------------------------------------------------
async function afterVae() {
  fill("decode-out");
  $("decode-progress").value = 0;
  say("decode-status", "");
  if (!state.latent || !state.vae) {
    $("check-panel").hidden = true;
    $("decode-panel").hidden = true;
    return;
  }
  try {
    const report = await runCheck();
    $("decode-panel").hidden = false;
    $("decode-button").textContent = report.verdict === "error" ? "Decode anyway" : "Decode";
    if (report.verdict !== "error") await runDecode(false);
    else say("decode-status", "the check found an error: decoding would give a wrong picture (or fail); decode anyway to see it", true);
  } catch (error) {
    fill("check", el("p", { class: "error-box", text: error.message }));
  }
}

async function onLatent(file) {
  $("latent-name").textContent = file.name;
  say("status", `uploading ${file.name} …`);
  try {
    const up = await upload(file);
    if (up.kind !== "latent") {
      const hint = up.kind === "weights" ? "; drop weight files on the VAE field" : "";
      throw new ApiError(`${up.name} is ${up.kind === "unknown" ? "not readable" : `a ${up.kind} file`}, not a latent${hint}${up.note ? ` (${up.note})` : ""}`);
    }
    state.latent = { upload: up.id };
    state.latentName = up.name;
    $("results").hidden = false;
    $("more-panel").hidden = false;
    fill("preview", el("p", { class: "status", text: "…" }));
    await Promise.all([showFacts(), showIdentify()]);
    await showPreview();
    say("status", `${up.name}: ${up.size.toLocaleString()} bytes, sha256 ${up.sha256.slice(0, 12)}…`);
    await afterVae();
  } catch (error) {
    say("status", error.message, true);
  }
}

async function onVae(file) {
  $("vae-name").textContent = file.name;
  say("status", `uploading ${file.name} …`);
  try {
    const up = await upload(file);
    if (up.kind !== "weights") throw new ApiError(`${up.name} is ${up.kind === "unknown" ? "not readable" : `a ${up.kind} file`}, not a VAE${up.note ? ` (${up.note})` : ""}`);
    addVaeChoice({ upload: up.id }, `${up.name} (uploaded)`, true);
    state.vae = { upload: up.id };
    say("status", `${up.name}: uploaded`);
    await afterVae();
  } catch (error) {
    say("status", error.message, true);
  }
}

function dropZone(zone, input, handler) {
  input.addEventListener("change", () => { if (input.files.length) handler(input.files[0]); });
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer && event.dataTransfer.files.length) handler(event.dataTransfer.files[0]);
  });
}

function checkedVaes() {
  return [...$("compare-vaes").querySelectorAll("input:checked")].map((i) => JSON.parse(i.value));
}

async function runCompare() {
  $("compare-button").disabled = true;
  try {
    const vaes = checkedVaes();
    if (!vaes.length) throw new ApiError("tick at least one VAE to compare");
    const done = await runJob("compare", { latent: state.latent, vaes }, "compare");
    const c = done.result.comparison;
    const head = el("tr", {}, ["VAE", "format", "PSNR dB", "colourfulness", "dynamic range", "check", "note"].map((h) => el("th", { text: h })));
    const rows = c.candidates.map((k) => el("tr", {}, [k.name, k.format || "?", num(k.psnr_db), num(k.colourfulness), num(k.dynamic_range),
      k.verdict || "—", k.error || (k.relabelled ? "the latent read as this VAE's format" : "")].map((v) => el("td", { text: v }))));
    fill("compare-out", el("h3", { text: "Comparison" }), el("p", { class: "sub", text: `PSNR against ${c.reference}` }), el("table", {}, head, rows),
      done.files.map((f) => el("figure", {}, el("img", { class: "pic", src: f.url, alt: "each VAE's decode, side by side" }))));
    say("compare-status", `compared ${c.candidates.length} VAEs`);
  } catch (error) {
    say("compare-status", error.message, true);
  } finally {
    $("compare-button").disabled = false;
  }
}

async function runTransfer() {
  $("transfer-button").disabled = true;
  try {
    if (!state.vae) throw new ApiError("pick the latent's own VAE above first: transfer decodes with it");
    const body = { latent: state.latent, from_vae: state.vae, to_vae: JSON.parse($("transfer-target").value),
      refine: Number($("transfer-refine").value) || 0, report: $("transfer-report").checked };
    const done = await runJob("transfer", body, "transfer");
    const r = done.result, file = done.files[0];
    const parts = [el("h3", { text: "Transfer" }), el("p", {}, `${r.source.name} (${r.source.format || "unknown"}) → ${r.latent.format || "unknown"} ${r.latent.space} [${r.latent.shape.join(", ")}] by ${r.method}; `,
      file ? el("a", { href: file.url, download: file.name, text: `download ${file.name}` }) : "")];
    if (r.fidelity.length) {
      const cols = ["method", "psnr", "ssim", "seconds_per_latent"];
      parts.push(el("table", { id: "fidelity" }, el("tr", {}, ["method", "PSNR dB", "SSIM", "ms / latent"].map((h) => el("th", { text: h }))),
        r.fidelity.map((row) => el("tr", {}, cols.map((k) => el("td", { class: k === "method" ? "" : "n",
          text: k === "seconds_per_latent" && typeof row[k] === "number" ? num(row[k] * 1000) : num(row[k]) }))))),
      el("p", { class: "note", text: r.fidelity_note }));
    }
    fill("transfer-out", parts);
    say("transfer-status", "transferred");
  } catch (error) {
    say("transfer-status", error.message, true);
  } finally {
    $("transfer-button").disabled = false;
  }
}

async function runReport() {
  $("report-button").disabled = true;
  try {
    const done = await runJob("report", { latents: [state.latent], vaes: state.vae ? [state.vae] : [], title: `latentbridge report: ${state.latentName}` }, "report");
    const file = done.files[0];
    fill("report-status", el("a", { id: "report-link", href: file.url, target: "_blank", rel: "noopener", text: "open the HTML report" }));
  } catch (error) {
    say("report-status", error.message, true);
  } finally {
    $("report-button").disabled = false;
  }
}

async function start() {
  dropZone($("latent-drop"), $("latent-input"), onLatent);
  dropZone($("vae-drop"), $("vae-input"), onVae);
  $("vae-select").addEventListener("change", () => {
    state.vae = $("vae-select").value ? JSON.parse($("vae-select").value) : null;
    afterVae();
  });
  $("decode-button").addEventListener("click", () => runDecode($("decode-button").textContent !== "Decode"));
  $("decode-cancel").addEventListener("click", () => { if (decodeJob) api(`/api/jobs/${decodeJob.id}/cancel`, {}).catch(() => null); });
  $("compare-button").addEventListener("click", runCompare);
  $("transfer-button").addEventListener("click", runTransfer);
  $("report-button").addEventListener("click", runReport);
  try {
    const [info, findings] = await Promise.all([api("/api/info"), api("/api/findings")]);
    state.info = info;
    state.findings = findings;
    for (const choice of info.vaes) addVaeChoice(choice.ref, choice.label, false);
    say("status", "drop a latent file to begin");
  } catch (error) {
    say("status", error.message, true);
  }
}

document.addEventListener("DOMContentLoaded", start);
