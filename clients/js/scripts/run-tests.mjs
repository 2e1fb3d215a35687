// `npm test`: node's test runner on test/, one file at a time (they share one server). The
// tests need a running server and its secret in the environment (MENTEO_SDK_URL,
// MENTEO_SDK_SECRET; MENTEO_SDK_CONTROL for the restart test): tests/test_js_sdk.py starts
// one and runs this. Node 20 and 21 need a flag for their built-in WebSocket.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const major = Number(process.versions.node.split(".")[0]);
const flags = major < 22 ? ["--experimental-websocket"] : [];
const files = readdirSync(join(root, "test"))
  .filter((name) => name.endsWith(".test.mjs"))
  .sort()
  .map((name) => join(root, "test", name));
const done = spawnSync(
  process.execPath,
  [...flags, "--test", "--test-concurrency=1", ...process.argv.slice(2), ...files],
  { stdio: "inherit" },
);
process.exit(done.status ?? 1);
