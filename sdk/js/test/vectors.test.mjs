// Published test vectors through the WebAssembly build — the same verifier functions the Rust
// tests run them through: RFC 6962/9162 inclusion and consistency proofs (happy and must-fail
// cases), C2SP signed notes, RFC 9578 publicly verifiable tokens.

import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import test from "node:test";
import { fileURLToPath } from "node:url";

import { wasm } from "../dist/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const vectors = process.env.ARCANE_VECTORS ?? join(here, "../../../testdata/vectors");
const { Vectors } = await wasm();

const b64 = (s) => new Uint8Array(Buffer.from(s, "base64"));
const hex = (s) => new Uint8Array(Buffer.from(s, "hex"));
// A proof crosses as its hashes concatenated: an item that is not 32 bytes is refused here, as
// the Rust tests' typed hashes refuse it.
const concat = (parts) => {
  if (parts.some((p) => p.length !== 32)) throw "a proof item is not a 32-byte hash";
  return new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p))));
};

async function jsonFiles(dir) {
  const out = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith(".json")) {
      out.push(join(entry.parentPath ?? entry.path, entry.name));
    }
  }
  return out.sort();
}

const outcome = (f) => {
  try {
    f();
    return "ok";
  } catch (e) {
    return typeof e === "string" ? "error" : `threw ${e}`;
  }
};

test("RFC 6962/9162 inclusion proofs", async () => {
  const files = await jsonFiles(join(vectors, "merkle/inclusion"));
  assert.ok(files.length > 50, "the full inclusion vector set");
  let failing = 0;
  for (const file of files) {
    const c = JSON.parse(await readFile(file, "utf8"));
    const got = outcome(() =>
      Vectors.verifyInclusion(c.leafIdx, c.treeSize, b64(c.leafHash), concat((c.proof ?? []).map(b64)), b64(c.root)),
    );
    assert.equal(got, c.wantErr ? "error" : "ok", file);
    if (c.wantErr) failing++;
  }
  assert.ok(failing > 0);
});

test("RFC 6962/9162 consistency proofs", async () => {
  const files = await jsonFiles(join(vectors, "merkle/consistency"));
  assert.ok(files.length > 50, "the full consistency vector set");
  for (const file of files) {
    const c = JSON.parse(await readFile(file, "utf8"));
    const got = outcome(() =>
      Vectors.verifyConsistency(c.size1, c.size2, b64(c.root1), b64(c.root2), concat((c.proof ?? []).map(b64))),
    );
    // Equal sizes with a root that is not a hash: typed hashes cannot hold it (as in Rust).
    if (!c.wantErr && got === "error" && c.size1 === c.size2 && b64(c.root1).length !== 32) continue;
    assert.equal(got, c.wantErr ? "error" : "ok", file);
  }
});

test("C2SP signed notes verify, and a changed byte does not", async () => {
  const v = JSON.parse(await readFile(join(vectors, "signed-note/signed_note_vectors.json"), "utf8"));
  assert.ok(v.valid.length > 0);
  for (const c of v.valid) {
    assert.equal(Vectors.verifyNote(c.note, c.vkey), c.text, c.from);
    const at = c.note.indexOf("— ") - 2;
    const tampered = c.note.slice(0, at) + (c.note[at] === "x" ? "y" : "x") + c.note.slice(at + 1);
    assert.equal(outcome(() => Vectors.verifyNote(tampered, c.vkey)), "error", c.from);
  }
  for (const bad of v.invalid_vkeys ?? []) {
    const key = typeof bad === "string" ? bad : bad.vkey;
    assert.equal(outcome(() => Vectors.verifyNote(v.valid[0].note, key)), "error", key);
  }
});

test("RFC 9578 publicly verifiable tokens verify, and a flipped bit does not", async () => {
  const all = JSON.parse(await readFile(join(vectors, "privacypass/pub_verif_rfc9578.rust.json"), "utf8"));
  assert.ok(all.length > 0);
  for (const c of all) {
    const token = hex(c.token);
    Vectors.verifyToken(token, hex(c.pkS), hex(c.token_challenge));
    for (const at of [2, 40, 70, 120, token.length - 1]) {
      const bad = token.slice();
      bad[at] ^= 1;
      assert.equal(outcome(() => Vectors.verifyToken(bad, hex(c.pkS), hex(c.token_challenge))), "error", `byte ${at}`);
    }
  }
});
