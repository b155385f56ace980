// The verification center in headless Chromium (Debian's), driven by playwright-core, against the
// logs cli/tests/verification_center.rs starts: ARCANE_VC_PAGE (the page at the honest log's /ui/,
// its settings in the fragment), ARCANE_VC_LOG (that log), ARCANE_VC_TAMPERED_TILES and
// ARCANE_VC_BAD_SIGNATURE (proxies of it that lie), ARCANE_VC_FORK (a fork of it),
// ARCANE_VC_RECEIPT (a receipt of an answered chat). Screenshots go to ARCANE_VC_ARTIFACTS.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through cargo test -p arcane-cli --test verification_center`);
  return value;
};

const page0 = env("ARCANE_VC_PAGE");
const logUrl = env("ARCANE_VC_LOG");
const artifacts = env("ARCANE_VC_ARTIFACTS");
let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.ARCANE_VC_CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
});

/** The page with its fragment's `log` replaced by `log` (the rest — key, witness, publisher — kept,
 * unless `witnesses` is false). */
function pointedAt(log, { witnesses = true } = {}) {
  const url = new URL(page0);
  const params = new URLSearchParams(url.hash.slice(1));
  params.set("log", log);
  if (!witnesses) {
    params.delete("witness");
    params.delete("threshold");
  }
  url.hash = params.toString();
  return url.toString();
}

/** Opens `url` in `context` and waits for the result: the status leaves "working". */
async function open(context, url) {
  const page = await context.newPage();
  const started = performance.now();
  const requests = [];
  page.on("request", (r) => requests.push(r.url()));
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForFunction(
    () => ["passed", "failed", "split-view"].includes(document.querySelector("#status")?.dataset.state),
    null,
    { timeout: 60_000 },
  );
  const state = await page.getAttribute("#status", "data-state");
  const status = await page.textContent("#status");
  console.log(`measured: ${url.split("#")[0]} ${state} after ${Math.round(performance.now() - started)} ms, ${requests.length} requests`);
  return { page, state, status, requests, errors };
}

/** The honest log's checkpoint, read here without the page's code: size and root (hex). */
async function honestCheckpoint() {
  const text = await (await fetch(`${logUrl}/checkpoint`)).text();
  const [, size, root] = text.split("\n");
  return { size: Number(size), root: Buffer.from(root, "base64").toString("hex"), text };
}

test("the honest log: size, root, entries by kind, witnesses, every proof — and nothing fetched elsewhere", async () => {
  const context = await browser.newContext();
  const { page, state, status, requests, errors } = await open(context, page0);
  assert.equal(state, "passed", status);
  const expected = await honestCheckpoint();
  assert.equal(Number(await page.textContent("[data-testid=checkpoint-size]")), expected.size);
  assert.equal(await page.textContent("[data-testid=checkpoint-root]"), expected.root);
  assert.match(await page.textContent("[data-testid=witness-policy]"), /^met: 1 of 1 required witnesses cosigned/);
  const roles = await page.$$eval("#signatures tbody tr", (rows) =>
    rows.map((r) => [r.dataset.role, r.querySelector("td:last-child").textContent.startsWith("yes")]),
  );
  assert.deepEqual(roles, [["log", true], ["witness", true]]);
  const kinds = await page.$$eval("[data-testid=entry]", (rows) => rows.map((r) => r.dataset.kind));
  assert.equal(kinds.length, expected.size, "one row per entry");
  for (const kind of ["release", "ohttp-keys", "token-key-tgt", "token-key-ott"]) {
    assert.ok(kinds.includes(kind), `${kind} in ${kinds}`);
  }
  const proven = await page.$$eval("[data-testid=entry]", (rows) => rows.every((r) => r.dataset.proven === "true"));
  assert.ok(proven, "every entry's inclusion proof verified");
  const release = await page.textContent("[data-testid=release]");
  assert.match(release, /PCR0[0-9a-f]{96}/);
  assert.match(release, /Model SHA-256[0-9a-f]{64}/);
  assert.equal(await page.locator("[data-testid=overlap]").count(), 0, "the demo's key sets do not overlap");
  assert.match(await page.textContent("[data-testid=consistency]"), /first checkpoint/);
  const origin = new URL(page0).origin;
  assert.deepEqual(requests.filter((u) => new URL(u).origin !== origin), [], "only the log was fetched");
  assert.deepEqual(errors, []);
  await page.screenshot({ path: join(artifacts, "verified.png"), fullPage: true });

  // A second visit checks consistency with the first.
  const again = await open(context, page0);
  assert.equal(again.state, "passed", again.status);
  assert.match(await again.page.textContent("[data-testid=consistency]"), /^consistent: size \d+ as saved/);
  await context.close();
});

test("on a phone the page is readable: nothing wider than the screen", async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true });
  const { page, state, status } = await open(context, page0);
  assert.equal(state, "passed", status);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than the screen`);
  await page.screenshot({ path: join(artifacts, "phone.png"), fullPage: false });
  await context.close();
});

test("a receipt of an answered chat is re-checked against the log; a forged one fails", async () => {
  const context = await browser.newContext();
  const { page, state, status } = await open(context, page0);
  assert.equal(state, "passed", status);
  const receipt = env("ARCANE_VC_RECEIPT");
  await page.fill("[data-testid=receipt-text]", receipt);
  await page.click("#receipt-check");
  await page.waitForSelector("[data-testid=receipt]");
  const checks = await page.$$eval("[data-testid=recheck]", (rows) =>
    Object.fromEntries(rows.map((r) => [r.dataset.check, r.dataset.passed])),
  );
  assert.deepEqual(checks, {
    origin: "true",
    checkpoint: "true",
    "release-inclusion": "true",
    "release-publisher": "true",
    model: "true",
    "release-validity": "true",
    attestation: "null",
  });
  assert.equal(await page.getAttribute("[data-testid=receipt]", "data-passed"), "true");

  const forged = JSON.parse(receipt);
  forged.model_sha256 = "00".repeat(32);
  await page.fill("[data-testid=receipt-text]", JSON.stringify({ checks: forged.checks ?? [], receipt: forged }));
  await page.click("#receipt-check");
  await page.waitForSelector("[data-testid=receipt][data-passed=false]");
  assert.equal(await page.getAttribute("[data-testid=recheck][data-check=model]", "data-passed"), "false");
  await context.close();
});

test("a log that serves a tampered tile fails: its entries are not the ones it signed", async () => {
  const context = await browser.newContext();
  const { page, state, status } = await open(context, pointedAt(env("ARCANE_VC_TAMPERED_TILES")));
  assert.equal(state, "failed", status);
  assert.match(status, /FAILED \(tampered\): the log's entries hash to [0-9a-f]{64} but its signed checkpoint says/);
  await page.screenshot({ path: join(artifacts, "tampered-tile.png"), fullPage: true });
  await context.close();
});

test("a checkpoint with a bad signature fails the checkpoint check", async () => {
  const context = await browser.newContext();
  const { page, state, status } = await open(context, pointedAt(env("ARCANE_VC_BAD_SIGNATURE")));
  assert.equal(state, "failed", status);
  assert.match(status, /FAILED \(checkpoint\)/);
  assert.ok(await page.locator("[data-testid=entry]").count() === 0, "no entry shown from an unverified log");
  await page.screenshot({ path: join(artifacts, "bad-signature.png"), fullPage: true });
  await context.close();
});

test("a forked log, after the honest one was seen: a loud split view with both signed notes", async () => {
  const context = await browser.newContext();
  const first = await open(context, page0);
  assert.equal(first.state, "passed", first.status);
  // The fork has no witness: under the witness policy it fails before anything else.
  const witnessed = await open(context, pointedAt(env("ARCANE_VC_FORK")));
  assert.equal(witnessed.state, "failed", witnessed.status);
  assert.match(witnessed.status, /FAILED \(witnesses\)/);
  // Without one (as for a log that has no witnesses), the fork is caught by consistency with
  // the checkpoint this browser saw of the same log key.
  const { page, state, status } = await open(context, pointedAt(env("ARCANE_VC_FORK"), { witnesses: false }));
  assert.equal(state, "split-view", status);
  assert.ok(await page.isVisible("[data-testid=split-view]"));
  const saved = await page.textContent("#split-saved");
  const shown = await page.textContent("#split-shown");
  const honest = await honestCheckpoint();
  // The honest log's body (origin, size, root) and its signatures, as the browser saw it.
  assert.ok(saved.startsWith(honest.text.split("\n").slice(0, 3).join("\n") + "\n"), saved);
  assert.match(saved, /\n\u2014 /);
  assert.notEqual(shown, saved);
  assert.match(shown, /\n\u2014 /, "the fork's note, signed");
  await page.screenshot({ path: join(artifacts, "split-view.png"), fullPage: true });
  await context.close();
});

test("two key sets of one role valid at once stand out in the key timeline", async () => {
  const context = await browser.newContext();
  const { page, state, status } = await open(context, pointedAt(env("ARCANE_VC_FORK"), { witnesses: false }));
  assert.equal(state, "passed", status);
  assert.match(status, /1 overlapping key set\(s\)/);
  const warnings = await page.$$eval("[data-testid=overlap]", (ps) => ps.map((p) => p.textContent));
  assert.equal(warnings.length, 1, String(warnings));
  assert.match(warnings[0], /ohttp-keys entries \d+ and \d+ are both valid for \d+ s \(rotation overlap allows 86400 s\)/);
  await page.locator("[data-testid=overlap]").scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(artifacts, "overlapping-keys.png"), fullPage: false });
  await context.close();
});
