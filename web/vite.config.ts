// The verification center builds to dist/ with relative asset paths, so the same files work at
// any path: `arcane-log serve --ui web/dist` serves them at /ui/, and any static host anywhere.
import { defineConfig } from "vite";

export default defineConfig({
  base: "./",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // The WebAssembly checks are one file beside the script, never inlined.
    assetsInlineLimit: 0,
  },
  server: { fs: { allow: [".."] } },
});
