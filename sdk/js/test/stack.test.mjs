// The SDK against the demo stack (cli/tests/js_sdk.rs starts it and names its trust files): a
// verified streamed chat and the refusals the Rust client makes. Without the stack the tests
// are skipped, loudly (the Rust test asserts that none was).

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, stat } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, isAbsolute, join } from "node:path";
import test from "node:test";

import * as production from "../dist/index.js";
import {
  connect,
  FileStorage,
  MemoryStorage,
  RefusedError,
  SplitViewError,
  TokenError,
} from "../dist/development.js";

const env = process.env;
const skip = env.ARCANE_SDK_TRUST ? false : "no stack: ARCANE_SDK_TRUST is not set";
if (skip) console.warn(`SKIPPED: ${skip}`);

/** A trust file's text and the files it names (read relative to it). */
async function trustOf(path) {
  const text = await readFile(path, "utf8");
  const files = {};
  for (const [, name] of text.matchAll(/^(?:api_key_file|development_nitro_root)\s*=\s*"(.*)"\s*$/gm)) {
    const at = isAbsolute(name) ? name : join(dirname(path), name);
    files[name] = await readFile(at, "utf8");
  }
  return { trust: text, files };
}

async function client(path, storage = new MemoryStorage()) {
  return connect({ ...(await trustOf(path)), storage, candidates: 2 });
}

const hello = { messages: [{ role: "user", content: "What is the capital of France?" }], max_tokens: 8 };

test("a verified request streams its answer and leaves a receipt", { skip }, async () => {
  const dir = await mkdtemp(join(tmpdir(), "arcane-sdk-"));
  const storage = new FileStorage(dir);
  const c = await client(env.ARCANE_SDK_TRUST, storage);
  const report = await c.verify();
  assert.deepEqual(
    report.map((p) => p.check),
    ["checkpoint", "witnesses", "consistency", "ohttp-keys", "token-keys", "nodes"],
  );
  assert.match(report[2].detail, /first checkpoint \(size \d+\) saved/);
  assert.match(report[5].detail, /verified: PCR0 [0-9a-f]{12}…, release entry \d+/);
  const answer = await c.chat(hello);
  assert.equal(answer.report.length, 6);
  const deltas = [];
  for await (const d of answer) deltas.push(d);
  const summary = await answer.summary;
  assert.ok(deltas.length > 0, "text arrived as deltas");
  assert.ok(summary.usage.completion_tokens > 0 && summary.usage.completion_tokens <= 8);
  const receipt = summary.receipt;
  assert.equal(receipt.outcome, "answered");
  assert.match(receipt.model_sha256, /^[0-9a-f]{64}$/);
  assert.match(receipt.document_sha256, /^[0-9a-f]{64}$/);
  // The node signed this very text inside the enclave; the SDK checked it before the receipt.
  const text = deltas.join("");
  assert.equal(receipt.signed_answer.answer_sha256, createHash("sha256").update(text).digest("hex"));
  assert.equal(receipt.signed_answer.release_leaf_hash, receipt.release_leaf_hash);
  assert.match(receipt.signed_answer.release, /^c2sp\.org\/tlog-proof@v1\n/);
  assert.equal(receipt.completion_tokens, summary.usage.completion_tokens);
  assert.deepEqual(receipt.checks, answer.report, "the receipt records the checks passed");
  assert.deepEqual(await c.receipts(), [receipt]);
  // What stays on disk: the saved checkpoint, the wallet (private), the receipt — never the prompt.
  const wallet = await stat(join(dir, "wallet.json"));
  assert.equal(wallet.mode & 0o777, 0o600);
  const saved = await readFile(join(dir, "checkpoint"), "utf8");
  assert.match(saved, new RegExp(`^${c.trust.origin}\\n\\d+\\n`));
  for (const name of ["wallet.json", "receipts.jsonl", "checkpoint"]) {
    assert.ok(!(await readFile(join(dir, name), "utf8")).includes("capital of France"));
  }
  // A second request: the checkpoint is now checked against the saved one.
  const again = await c.chat(hello);
  assert.match(again.report[2].detail, /size \d+ (as saved|extends the saved size \d+)/);
  await again.text();
});

/**
 * A relay written from RFC 9458 §2 alone, in front of `gateway`: it forwards the body and its
 * media type, answers with the gateway's status, media type and body (streamed), adds nothing and
 * knows nothing of tokens. Resolves to its URL and the header names of each request it got.
 */
async function minimalRelay(gateway) {
  const seen = [];
  const server = createServer(async (req, res) => {
    seen.push(Object.keys(req.headers));
    const body = [];
    for await (const piece of req) body.push(piece);
    const answer = await fetch(`${gateway}/.well-known/ohttp-gateway`, {
      method: "POST",
      headers: { "content-type": req.headers["content-type"] },
      body: Buffer.concat(body),
      redirect: "manual",
    });
    res.writeHead(answer.status, { "content-type": answer.headers.get("content-type") ?? "" });
    for await (const piece of answer.body) res.write(piece);
    res.end();
  });
  await new Promise((ready) => server.listen(0, "127.0.0.1", ready));
  server.unref();
  return { url: `http://127.0.0.1:${server.address().port}/arcane`, seen };
}

test("a verified request goes through a relay that is not ours and takes no token", { skip }, async () => {
  const { trust, files } = await trustOf(env.ARCANE_SDK_TRUST);
  const gateway = trust.match(/^gateway = "(.*)"$/m)[1];
  const relay = await minimalRelay(gateway);
  const edited = trust.replace(/^relay = ".*"$/m, `relays = [{ url = "${relay.url}" }]`);
  const c = await connect({ trust: edited, files, storage: new MemoryStorage(), candidates: 2 });
  assert.deepEqual(c.trust.relays, [{ url: relay.url, token: false, chunked: true, http3: false }]);
  const answer = await c.chat(hello);
  const deltas = [];
  for await (const d of answer) deltas.push(d);
  const summary = await answer.summary;
  assert.ok(deltas.length > 0);
  assert.equal(summary.receipt.outcome, "answered");
  // The node list and the chat went through it, neither with a token.
  assert.equal(relay.seen.length, 2);
  for (const names of relay.seen) assert.ok(!names.includes("authorization"), names.join());
});

test("a checkpoint signed by another key is refused before anything is sent", { skip }, async () => {
  const c = await client(env.ARCANE_SDK_IMPOSTOR_TRUST);
  await assert.rejects(c.chat(hello), (e) => {
    assert.ok(e instanceof RefusedError, String(e));
    assert.equal(e.check, "checkpoint");
    return true;
  });
  assert.equal(c.tokensOnHand, 0, "no token was even asked for");
});

test("a node whose release is not in the log is refused", { skip }, async () => {
  const c = await client(env.ARCANE_SDK_UNLOGGED_TRUST);
  await assert.rejects(c.chat(hello), (e) => {
    assert.ok(e instanceof RefusedError, String(e));
    assert.equal(e.check, "nodes");
    assert.match(e.message, /PCR0/);
    return true;
  });
});

test("a forked log is a split view, and both notes are kept", { skip }, async () => {
  const storage = new MemoryStorage();
  await (await client(env.ARCANE_SDK_TRUST, storage)).verify();
  const honest = new TextDecoder().decode(await storage.get("checkpoint"));
  const forked = await client(env.ARCANE_SDK_FORKED_TRUST, storage);
  const e = await forked.chat(hello).then(
    () => assert.fail("a split view must stop the client"),
    (e) => e,
  );
  assert.ok(e instanceof SplitViewError, String(e));
  assert.equal(e.check, "consistency");
  const saved = new TextDecoder().decode(await storage.get(`${e.savedAs}/saved.checkpoint`));
  const shown = new TextDecoder().decode(await storage.get(`${e.savedAs}/shown.checkpoint`));
  assert.equal(saved, honest);
  assert.notEqual(shown, saved);
  assert.ok(shown.startsWith(forked.trust.origin));
  // The saved checkpoint is still the honest one: the honest log keeps working.
  assert.equal(new TextDecoder().decode(await storage.get("checkpoint")), honest);
  await (await client(env.ARCANE_SDK_TRUST, storage)).verify();
});

test("a spent token is refused", { skip }, async () => {
  const storage = new MemoryStorage();
  await (await client(env.ARCANE_SDK_TRUST, storage)).verify();
  const before = await storage.get("wallet.json");
  await (await (await client(env.ARCANE_SDK_TRUST, storage)).chat(hello)).text();
  // The wallet as it was before: its tokens were spent since.
  await storage.set("wallet.json", before);
  const c = await client(env.ARCANE_SDK_TRUST, storage);
  await assert.rejects(c.chat(hello), (e) => {
    assert.ok(e instanceof TokenError, String(e));
    assert.equal(e.kind, "token-refused");
    assert.match(e.message, /spent/);
    return true;
  });
});

test("the production build refuses a trust file with a development root", { skip }, async () => {
  const { trust, files } = await trustOf(env.ARCANE_SDK_TRUST);
  await assert.rejects(
    production.connect({ trust, files, storage: new MemoryStorage() }),
    (e) => {
      assert.equal(e.kind, "config");
      assert.match(e.message, /development_nitro_root/);
      return true;
    },
  );
});
