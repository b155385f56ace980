// Builds the package: the Rust checks (sdk/wasm) for wasm32-unknown-unknown — the production
// build (AWS Nitro root only) into dist/wasm and the development build (its tests against the
// demo stack's simulated NSM) into dist/wasm-dev — their JavaScript glue with wasm-bindgen, then
// the TypeScript.
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, "..");
const crate = join(pkg, "..", "wasm");
const target = process.env.CARGO_TARGET_DIR ?? join(crate, "target");
const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, stdio: "inherit" });

rmSync(join(pkg, "dist"), { recursive: true, force: true });
for (const [flavor, features] of [["wasm", []], ["wasm-dev", ["--features", "development"]]]) {
  run("cargo", ["build", "--release", "--target", "wasm32-unknown-unknown", ...features], crate);
  const out = join(pkg, "dist", flavor);
  mkdirSync(out, { recursive: true });
  run("wasm-bindgen", ["--target", "web", "--remove-name-section", "--remove-producers-section", "--out-dir", out,
    join(target, "wasm32-unknown-unknown", "release", "arcane_sdk_wasm.wasm")], pkg);
}
run(process.execPath, [join(pkg, "node_modules", "typescript", "bin", "tsc"), "-p", pkg], pkg);
