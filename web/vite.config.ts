import { defineConfig } from "vitest/config";

// The app is served by the relay under /app/; the build lands inside the Python package so
// that an installed relay serves it without this folder.
export default defineConfig({
  base: "/app/",
  build: {
    outDir: "../src/tresen/relay/webapp/dist",
    emptyOutDir: true,
    target: "es2022",
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
  },
  test: {
    environment: "node",
    include: ["tests/**/*.test.ts"],
  },
});
