// The verification center: fetches from the one log URL the user configured, and hands every
// byte to the WebAssembly checks (sdk/wasm's Explorer, the Rust verifier), which decide. This
// file does I/O, storage of what the browser saw, and rendering — no check of its own.

import init, { Explorer } from "../../sdk/js/dist/wasm/arcane_sdk_wasm.js";
import { type Settings, readSettings, settingsFromFragment, writeSettings, storage } from "./settings.js";
import { clear, el, hash, short, time } from "./render.js";

/** Largest answer read from the log (an entry bundle of 256 entries of at most 64 KiB each). */
const MAX_ANSWER_BYTES = 17 * 1024 * 1024;
/** Inclusion proofs fetched at once. */
const PROOFS_IN_FLIGHT = 4;

interface CheckError {
  kind: string;
  check?: string;
  message: string;
  evidence?: { saved?: string; shown?: string; reason?: string; signatures?: SignatureLine[] };
}

interface SignatureLine {
  name: string;
  keyId: string;
  role: "log" | "witness" | "unknown";
  verified: boolean;
  timestamp?: number;
  error?: string;
}

interface CheckpointView {
  origin: string;
  size: number;
  root: string;
  rootHex: string;
  signatures: SignatureLine[];
  policy: { threshold: number; witnesses: number; cosigned: number };
}

interface EntryRow {
  index: number;
  leafHash: string;
  kind: string;
  entry?: { not_before: number; not_after: number; body: Record<string, unknown> };
  publisherTrusted?: string | null;
  valid: boolean;
  invalidReason?: string | null;
  current: boolean;
}

interface Timeline {
  windows: { group: string; index: number; not_before: number; not_after: number }[];
  overlaps: { group: string; first: number; second: number; seconds: number; message: string }[];
}

function thrownError(e: unknown): CheckError {
  if (typeof e === "string") {
    try {
      return JSON.parse(e) as CheckError;
    } catch {
      return { kind: "error", message: e };
    }
  }
  return { kind: "error", message: e instanceof Error ? e.message : String(e) };
}

/** A failure this page shows as the result. */
class Failure extends Error {
  constructor(readonly error: CheckError) {
    super(error.message);
  }
}

/** GET `path` from the configured log, with a bounded read; no redirect is followed. */
async function get(base: string, path: string): Promise<Uint8Array> {
  const url = base.replace(/\/+$/, "") + (path.startsWith("/") ? path : `/${path}`);
  let response: Response;
  try {
    response = await fetch(url, { redirect: "error", cache: "no-store", credentials: "omit" });
  } catch (e) {
    throw new Failure({ kind: "unreachable", message: `${url}: the log cannot be reached (${String(e)})` });
  }
  if (!response.ok) {
    throw new Failure({ kind: "status", message: `${url}: the log answered ${response.status}` });
  }
  const reader = response.body?.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  while (reader) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > MAX_ANSWER_BYTES) {
      await reader.cancel();
      throw new Failure({ kind: "unreachable", message: `${url}: answer over ${MAX_ANSWER_BYTES} bytes` });
    }
    parts.push(value);
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  return bytes;
}

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

function setStatus(state: "idle" | "working" | "passed" | "failed" | "split-view", text: string) {
  const status = $("status");
  status.dataset.state = state;
  $("status-text").textContent = text;
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

function explorerFor(settings: Settings): Explorer {
  try {
    return new Explorer(
      JSON.stringify({
        logKey: settings.key,
        witnesses: settings.witnesses,
        threshold: settings.threshold,
        publishers: settings.publishers,
      }),
    );
  } catch (e) {
    throw new Failure(thrownError(e));
  }
}

function check<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new Failure(thrownError(e));
  }
}



/** The explorer of the last log verified, for receipts. */
let verified: { explorer: Explorer; settings: Settings } | null = null;

async function verifyLog(settings: Settings) {
  verified = null;
  for (const id of ["checkpoint", "entries", "split-view"]) $(id).hidden = true;
  setStatus("working", "Verifying the checkpoint…");
  const explorer = explorerFor(settings);
  const base = settings.log;
  // 1. The checkpoint: the log's signature and the witness policy.
  const note = await get(base, "/checkpoint");
  let cp: CheckpointView;
  try {
    cp = JSON.parse(explorer.checkpoint(note)) as CheckpointView;
  } catch (e) {
    const error = thrownError(e);
    renderSignatures(error.evidence?.signatures ?? []);
    $("cp-origin").textContent = "—";
    $("cp-size").textContent = "—";
    $("cp-root").textContent = "—";
    $("cp-policy").textContent = error.check === "witnesses" ? `not met: ${error.message}` : "—";
    $("cp-consistency").textContent = "not checked";
    $("checkpoint").hidden = false;
    throw new Failure(error);
  }
  renderCheckpoint(cp);

  // 2. Consistency with what this browser saw of this log before.
  setStatus("working", "Checking consistency with the checkpoint this browser saw last…");
  const savedKey = `checkpoint:${settings.key.trim()}`;
  const saved = storage.get(savedKey);
  if (saved) {
    try {
      explorer.restore(saved);
    } catch (e) {
      $("cp-consistency").textContent = `the saved checkpoint no longer verifies under this key (${thrownError(e).message}); starting over`;
    }
  }
  let step: { prove?: { path: string }; done?: boolean; first?: boolean; report?: string; save?: string | null };
  try {
    step = JSON.parse(explorer.viewStep());
    while (step.prove) {
      const proof = await get(base, step.prove.path);
      step = JSON.parse(explorer.viewProof(proof));
    }
  } catch (e) {
    if (e instanceof Failure) throw e;
    const error = thrownError(e);
    if (error.kind === "split-view") showSplitView(error);
    throw new Failure(error);
  }
  if (step.save) storage.set(savedKey, step.save);
  $("cp-consistency").textContent = step.first
    ? `${step.report} (first visit: later visits check that the log only grows)`
    : `consistent: ${step.report}`;
  recordGrowth(settings.key, cp.size);

  // 3. Every entry, the tree recomputed from them.
  const rows: EntryRow[] = [];
  for (let path = explorer.nextBundle(); path; path = explorer.nextBundle()) {
    setStatus("working", `Reading entries: ${rows.length} of ${cp.size}…`);
    const bundle = await get(base, `/${path}`);
    rows.push(...(JSON.parse(check(() => explorer.pushBundle(bundle, nowSeconds()))) as EntryRow[]));
  }
  const timeline = JSON.parse(check(() => explorer.finish())) as Timeline;

  // 4. Each entry's inclusion proof.
  const proven = new Map<number, string | true>();
  let next = 0;
  const prove = async () => {
    while (next < rows.length) {
      const row = rows[next++];
      try {
        const reply = await get(base, explorer.inclusionPath(row.index));
        explorer.proveEntry(row.index, reply);
        proven.set(row.index, true);
      } catch (e) {
        proven.set(row.index, e instanceof Failure ? e.error.message : thrownError(e).message);
      }
      if (proven.size % 16 === 0) setStatus("working", `Verifying inclusion proofs: ${proven.size} of ${rows.length}…`);
    }
  };
  await Promise.all(Array.from({ length: PROOFS_IN_FLIGHT }, prove));
  renderEntries(rows, timeline, proven);
  const unproven = rows.filter((r) => proven.get(r.index) !== true);
  if (unproven.length > 0) {
    throw new Failure({
      kind: "tampered",
      message: `${unproven.length} entries fail their inclusion proof (first: entry ${unproven[0].index}: ${proven.get(unproven[0].index)})`,
    });
  }
  verified = { explorer, settings };
  const warnings = timeline.overlaps.length;
  setStatus(
    "passed",
    `Verified: ${cp.origin} at size ${cp.size}, every entry read and proven` +
      (warnings ? `; ${warnings} overlapping key set(s) — see below` : ""),
  );
}

function renderSignatures(lines: SignatureLine[]) {
  const body = $("signatures").querySelector("tbody")!;
  clear(body);
  for (const s of lines) {
    body.append(
      el("tr", { "data-role": s.role }, [
        el("td", {}, [s.name]),
        el("td", { class: "mono" }, [s.keyId]),
        el("td", {}, [s.role]),
        el("td", { class: s.verified ? "yes" : "no" }, [
          s.verified ? `yes${s.timestamp ? ` (cosigned ${time(s.timestamp)})` : ""}` : `no${s.error ? `: ${s.error}` : ""}`,
        ]),
      ]),
    );
  }
}

function renderCheckpoint(cp: CheckpointView) {
  $("cp-origin").textContent = cp.origin;
  $("cp-size").textContent = String(cp.size);
  $("cp-root").textContent = cp.rootHex;
  const policy = $("cp-policy");
  policy.textContent =
    cp.policy.witnesses === 0
      ? "no witnesses configured (set them in Log and keys to require cosignatures)"
      : `met: ${cp.policy.cosigned} of ${cp.policy.threshold} required witnesses cosigned (${cp.policy.witnesses} known)`;
  renderSignatures(cp.signatures);
  $("checkpoint").hidden = false;
}

function recordGrowth(key: string, size: number) {
  const storeKey = `growth:${key.trim()}`;
  const seen = JSON.parse(storage.get(storeKey) ?? "[]") as [number, number][];
  if (seen.length === 0 || seen[seen.length - 1][1] !== size) seen.push([nowSeconds(), size]);
  const kept = seen.slice(-50);
  storage.set(storeKey, JSON.stringify(kept));
  const list = $("growth");
  clear(list);
  for (const [at, n] of kept) list.append(el("li", {}, [`${time(at)}: size ${n}`]));
}

function showSplitView(error: CheckError) {
  $("split-reason").textContent = error.evidence?.reason ?? error.message;
  $("split-saved").textContent = error.evidence?.saved ?? "";
  $("split-shown").textContent = error.evidence?.shown ?? "";
  $("split-view").hidden = false;
}

const field = (body: Record<string, unknown>, name: string) => String(body[name] ?? "");

function renderEntries(rows: EntryRow[], timeline: Timeline, proven: Map<number, string | true>) {
  const counts = new Map<string, number>();
  for (const r of rows) counts.set(r.kind, (counts.get(r.kind) ?? 0) + 1);
  $("entries-summary").textContent =
    `${rows.length} entries: ` + [...counts].map(([k, n]) => `${n} ${k}`).join(", ") +
    ". The tree recomputed from them has the checkpoint's root.";

  const releases = $("releases");
  clear(releases);
  for (const r of rows.filter((r) => r.kind === "release" && r.entry)) {
    const b = r.entry!.body;
    const pcr8 = b.pcr8 ? [el("dt", {}, ["PCR8"]), el("dd", {}, [field(b, "pcr8")])] : [];
    releases.append(
      el("article", { class: "card", "data-testid": "release", "data-index": String(r.index) }, [
        el("h4", {}, [`Release, entry ${r.index} `, status(r)]),
        el("dl", {}, [
          el("dt", {}, ["PCR0"]), el("dd", {}, [field(b, "pcr0")]),
          el("dt", {}, ["PCR1"]), el("dd", {}, [field(b, "pcr1")]),
          el("dt", {}, ["PCR2"]), el("dd", {}, [field(b, "pcr2")]),
          ...pcr8,
          el("dt", {}, ["Model SHA-256"]), el("dd", {}, [field(b, "model_sha256")]),
          el("dt", {}, ["EIF SHA-384"]), el("dd", {}, [field(b, "eif_sha384")]),
          el("dt", {}, ["Engine"]), el("dd", {}, [`${field(b, "engine")} ${field(b, "engine_version")}`]),
          el("dt", {}, ["Source commit"]), el("dd", {}, [field(b, "source_commit")]),
          el("dt", {}, ["Valid"]), el("dd", {}, [`${time(r.entry!.not_before)} → ${time(r.entry!.not_after)}`]),
          el("dt", {}, ["Publisher"]), el("dd", {}, [r.publisherTrusted ?? "not a trusted publisher"]),
          el("dt", {}, ["Inclusion"]), el("dd", {}, [proofText(proven.get(r.index))]),
        ]),
        el("details", {}, [
          el("summary", {}, ["Reproduce it"]),
          el("pre", {}, [
            `git checkout ${field(b, "source_commit")}\n` +
              "# build the enclave image as docs/operations.md §4 says, then:\n" +
              `arcane-audit reproduce --eif compute.eif --url <log URL> --log-key '<log key>' --publisher '<publisher key>'\n` +
              `# it must find this entry: PCR0 ${short(field(b, "pcr0"))}…, EIF SHA-384 ${short(field(b, "eif_sha384"))}…`,
          ]),
        ]),
      ]),
    );
  }
  if (!releases.childElementCount) releases.append(el("p", {}, ["No release entries."]));

  const overlaps = $("overlaps");
  clear(overlaps);
  for (const o of timeline.overlaps) {
    overlaps.append(el("p", { class: "warning", "data-testid": "overlap" }, [`Overlapping key sets: ${o.message}`]));
  }
  const keyBody = $("key-timeline").querySelector("tbody")!;
  clear(keyBody);
  const byIndex = new Map(rows.map((r) => [r.index, r]));
  for (const w of [...timeline.windows].sort((a, b) => a.group.localeCompare(b.group) || a.not_before - b.not_before)) {
    const row = byIndex.get(w.index);
    const body = row?.entry?.body ?? {};
    const keyText = field(body, "token_key_id") || field(body, "public_key");
    const flagged = timeline.overlaps.some((o) => o.first === w.index || o.second === w.index);
    keyBody.append(
      el("tr", { class: flagged ? "no" : "", "data-testid": "key-window" }, [
        el("td", {}, [String(w.index)]),
        el("td", {}, [w.group]),
        el("td", {}, [time(w.not_before)]),
        el("td", {}, [time(w.not_after)]),
        el("td", { class: "mono" }, [short(keyText)]),
        el("td", {}, [proofText(proven.get(w.index))]),
      ]),
    );
  }

  const body = $("entry-table").querySelector("tbody")!;
  clear(body);
  for (const r of rows) {
    body.append(
      el("tr", { "data-testid": "entry", "data-kind": r.kind, "data-proven": String(proven.get(r.index) === true) }, [
        el("td", {}, [String(r.index)]),
        el("td", {}, [r.kind]),
        el("td", {}, [r.publisherTrusted ?? "unknown"]),
        el("td", {}, [status(r)]),
        el("td", { class: "mono" }, [hash(r.leafHash)]),
        el("td", {}, [proofText(proven.get(r.index))]),
      ]),
    );
  }
  $("entries").hidden = false;
}

function status(r: EntryRow): HTMLElement {
  if (!r.valid) return el("span", { class: "no" }, [`invalid: ${r.invalidReason ?? ""}`]);
  return r.current ? el("span", { class: "yes" }, ["valid now"]) : el("span", { class: "na" }, ["not valid now"]);
}

function proofText(p: string | true | undefined): HTMLElement {
  if (p === true) return el("span", { class: "yes" }, ["✓ proven"]);
  return el("span", { class: "no" }, [p ? `✗ ${p}` : "not checked"]);
}

// --- receipts ------------------------------------------------------------------------------------

interface Recheck {
  check: string;
  passed: boolean | null;
  detail: string;
}

/** The receipts in what was pasted: a receipt, a JSON-lines file of them, an array, or a
 * verification record (`{checks, receipt}`, or a reply carrying `arcane_verification`). */
function receiptsIn(input: string): string[] {
  const one = (v: unknown): unknown[] => {
    if (Array.isArray(v)) return v.flatMap(one);
    if (v && typeof v === "object") {
      const o = v as Record<string, unknown>;
      if (o.arcane_verification) return one(o.arcane_verification);
      if (o.receipt) return one({ ...(o.receipt as object), checks: o.checks ?? (o.receipt as Record<string, unknown>).checks });
      if ("release_index" in o) return [o];
    }
    return [];
  };
  try {
    return one(JSON.parse(input)).map((r) => JSON.stringify(r));
  } catch {
    return input
      .split("\n")
      .filter((l) => l.trim())
      .flatMap((l) => {
        try {
          return one(JSON.parse(l)).map((r) => JSON.stringify(r));
        } catch {
          return [];
        }
      });
  }
}

async function recheckReceipts() {
  const out = $("receipt-result");
  clear(out);
  if (!verified) {
    out.append(el("p", { class: "warning" }, ["Verify a log first: receipts are re-checked against its verified checkpoint."]));
    return;
  }
  const { explorer, settings } = verified;
  const receipts = receiptsIn(($("receipt-text") as HTMLTextAreaElement).value);
  if (receipts.length === 0) {
    out.append(el("p", { class: "warning", "data-testid": "receipt-error" }, ["No receipt found in the text."]));
    return;
  }
  for (const receipt of receipts) {
    try {
      const plan = JSON.parse(check(() => explorer.receiptPlan(receipt))) as { consistency: string | null; inclusion: string; entry: string };
      const consistency = plan.consistency ? await get(settings.log, plan.consistency) : new Uint8Array();
      const inclusion = await get(settings.log, plan.inclusion);
      const entry = await get(settings.log, plan.entry);
      const result = JSON.parse(check(() => explorer.recheckReceipt(receipt, consistency, inclusion, entry))) as {
        receipt: Record<string, unknown>;
        rechecks: Recheck[];
        record: { check: string; detail: string }[];
      };
      const failed = result.rechecks.some((r) => r.passed === false);
      out.append(
        el("article", { class: "card", "data-testid": "receipt", "data-passed": String(!failed) }, [
          el("h4", {}, [
            `Request answered ${new Date(Number(result.receipt.at_ms)).toISOString()} by ${String(result.receipt.model || "the model")}: `,
            el("span", { class: failed ? "no" : "yes" }, [failed ? "a re-check FAILED" : "every re-check passed"]),
          ]),
          el("table", { class: "rows" }, [
            el("tbody", {}, result.rechecks.map((r) =>
              el("tr", { "data-testid": "recheck", "data-check": r.check, "data-passed": String(r.passed) }, [
                el("td", {}, [r.check]),
                el("td", { class: r.passed === null ? "na" : r.passed ? "yes" : "no" }, [r.passed === null ? "not re-checkable" : r.passed ? "passed" : "FAILED"]),
                el("td", {}, [r.detail]),
              ]),
            )),
          ]),
          el("h4", {}, ["The client's record of the checks it ran before sending"]),
          el("ul", {}, result.record.length ? result.record.map((c) => el("li", {}, [`${c.check}: ${c.detail}`])) : [el("li", {}, ["(none in this receipt)"])]),
        ]),
      );
    } catch (e) {
      const error = e instanceof Failure ? e.error : thrownError(e);
      out.append(el("p", { class: "warning", "data-testid": "receipt-error" }, [error.message]));
    }
  }
}

// --- start ---------------------------------------------------------------------------------------

function fillForm(s: Settings) {
  $<HTMLInputElement>("log-url").value = s.log;
  $<HTMLInputElement>("log-key").value = s.key;
  $<HTMLTextAreaElement>("witnesses").value = s.witnesses.join("\n");
  $<HTMLInputElement>("threshold").value = String(s.threshold);
  $<HTMLTextAreaElement>("publishers").value = s.publishers.join("\n");
}

function formSettings(): Settings {
  const lines = (id: string) => $<HTMLTextAreaElement>(id).value.split("\n").map((l) => l.trim()).filter(Boolean);
  return {
    log: $<HTMLInputElement>("log-url").value.trim(),
    key: $<HTMLInputElement>("log-key").value.trim(),
    witnesses: lines("witnesses"),
    threshold: Number($<HTMLInputElement>("threshold").value) || 0,
    publishers: lines("publishers"),
  };
}

async function run(settings: Settings) {
  writeSettings(settings);
  try {
    await verifyLog(settings);
  } catch (e) {
    const error = e instanceof Failure ? e.error : thrownError(e);
    setStatus(error.kind === "split-view" ? "split-view" : "failed", `FAILED (${error.check ?? error.kind}): ${error.message}`);
  }
}

async function start() {
  await init({ module_or_path: new URL("../../sdk/js/dist/wasm/arcane_sdk_wasm_bg.wasm", import.meta.url) });
  const settings = settingsFromFragment(location.hash) ?? readSettings();
  $("settings-form").addEventListener("submit", (event) => {
    event.preventDefault();
    void run(formSettings());
  });
  $("receipt-check").addEventListener("click", () => void recheckReceipts());
  $<HTMLInputElement>("receipt-file").addEventListener("change", async (event) => {
    const file = (event.target as HTMLInputElement).files?.[0];
    if (file) ($("receipt-text") as HTMLTextAreaElement).value = await file.text();
  });
  if (settings) {
    fillForm(settings);
    await run(settings);
  } else {
    ($("settings-details") as HTMLDetailsElement).open = true;
  }
}

start().catch((e) => setStatus("failed", `FAILED: the checks could not start: ${thrownError(e).message}`));

