// The SDK as one ES module for browsers, with @msgpack/msgpack inside: the node serves it to
// the demo page (server/edge/demo_static/), so the page loads nothing from a CDN and needs
// no node_modules at run time. The file is committed; `--check` fails when it is not what
// the current sources build (tests/browser/test_demo.py runs that).
//   node scripts/bundle.mjs          write it
//   node scripts/bundle.mjs --check  compare, exit 1 on a difference
import { build } from "esbuild";
import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const out = fileURLToPath(new URL("../../../server/edge/demo_static/rendezvous-sdk.js", import.meta.url));
const msgpackLicense = await readFile(new URL("../node_modules/@msgpack/msgpack/LICENSE", import.meta.url), "utf8");
const banner = "// @rendezvous/sdk for browsers, with @msgpack/msgpack. Generated from clients/js/src by\n" +
  "// `make demo-bundle` (clients/js/scripts/bundle.mjs): do not edit.\n//\n" +
  "// @msgpack/msgpack's license:\n" +
  msgpackLicense.trim().split("\n").map((line) => `//   ${line}`.trimEnd()).join("\n");

const result = await build({
  // paths in the bundle's comments are relative to clients/js, wherever this runs from
  absWorkingDir: fileURLToPath(new URL("..", import.meta.url)),
  entryPoints: [fileURLToPath(new URL("../src/index.ts", import.meta.url))],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  legalComments: "inline",
  banner: { js: banner },
  write: false,
  logLevel: "warning",
});
const code = result.outputFiles[0].text;

if (process.argv.includes("--check")) {
  const committed = await readFile(out, "utf8").catch(() => "");
  if (committed !== code) {
    console.error(`${out} is not what clients/js/src builds: run \`make demo-bundle\` and commit it`);
    process.exit(1);
  }
  console.log(`${out} is up to date (${code.length} bytes)`);
} else {
  await writeFile(out, code);
  console.log(`wrote ${out} (${code.length} bytes)`);
}
