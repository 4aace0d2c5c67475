// Validates GLB files with the Khronos glTF validator (npm package gltf-validator).
//   node scripts/validate-gltf.mjs FILE.glb...
// Exits 1 if any file has validation errors; prints each file's counts.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

// GLTF_VALIDATOR_DIR: the folder where `npm install gltf-validator` ran (default: here).
const require = createRequire(
  process.env.GLTF_VALIDATOR_DIR ? `${process.env.GLTF_VALIDATOR_DIR}/index.js` : import.meta.url,
);
const validator = require("gltf-validator");

let failed = false;
for (const file of process.argv.slice(2)) {
  const report = await validator.validateBytes(new Uint8Array(readFileSync(file)));
  const { numErrors, numWarnings, numInfos } = report.issues;
  console.log(`${file}: ${numErrors} errors, ${numWarnings} warnings, ${numInfos} infos`);
  for (const m of report.issues.messages.filter((m) => m.severity === 0)) {
    console.log(`  ${m.code}: ${m.message} (${m.pointer ?? ""})`);
  }
  if (numErrors > 0) failed = true;
}
process.exit(failed ? 1 : 0);
