// Fails when types/ (checked in) is not what `tsc` makes of src/ now: run `npm run types`.
// tsc also type-checks the JSDoc of src/ (checkJs), so a wrong annotation fails here too.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = mkdtempSync(join(tmpdir(), "menteo-types-"));
try {
  const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
  execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.json"), "--outDir", out], {
    stdio: "inherit",
  });
  const made = readdirSync(out).sort();
  const kept = readdirSync(join(root, "types")).sort();
  const stale = [...new Set([...made, ...kept])].filter(
    (name) =>
      !made.includes(name) ||
      !kept.includes(name) ||
      readFileSync(join(out, name), "utf8") !== readFileSync(join(root, "types", name), "utf8"),
  );
  if (stale.length > 0) {
    console.error(`types/ is out of date (${stale.join(", ")}): run \`npm run types\` in clients/js`);
    process.exit(1);
  }
  console.log(`types/ is current (${made.length} files)`);
} finally {
  rmSync(out, { recursive: true, force: true });
}
