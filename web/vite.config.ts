import { defineConfig, type Plugin } from "vitest/config";

/** Olm's WebAssembly is fetched by the script once it runs; a preload hint in the page lets
 * the browser fetch both at once. (A fetch preload is a CORS request with same-origin
 * credentials, exactly what Emscripten's loader asks for, so the preloaded answer is used.) */
function preloadWasm(): Plugin {
  return {
    name: "tresen-preload-wasm",
    apply: "build",
    transformIndexHtml: {
      order: "post",
      handler(_html, context) {
        const wasm = Object.keys(context.bundle ?? {}).filter((name) => name.endsWith(".wasm"));
        return wasm.map((name) => ({
          tag: "link",
          attrs: { rel: "preload", href: `/app/${name}`, as: "fetch", type: "application/wasm", crossorigin: "" },
          injectTo: "head" as const,
        }));
      },
    },
  };
}

// The app is served by the relay under /app/; the build lands inside the Python package so
// that an installed relay serves it without this folder.
export default defineConfig({
  base: "/app/",
  plugins: [preloadWasm()],
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
    // Some tests encrypt megabytes or derive keys; on a busy two-core machine that takes
    // longer than vitest's default of 5 s without anything being wrong.
    testTimeout: 30_000,
  },
});
