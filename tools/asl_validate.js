#!/usr/bin/env node
// asl-validator on several definition files in one Node process: its CLI costs a process
// (about 1.4 s of CPU) per file, and `make asl` checks fifteen. Same validator, same options
// as the CLI's defaults (ARNs and paths checked). Usage: node tools/asl_validate.js FILE...
// Prints one JSON line per file: {"path", "valid", "errors"}; exits 2 only on a crash.
"use strict";
const fs = require("fs");
const validator = require("asl-validator");

for (const path of process.argv.slice(2)) {
  let verdict;
  try {
    const result = validator(JSON.parse(fs.readFileSync(path, "utf8")), { checkArn: true, checkPaths: true });
    verdict = { path, valid: result.isValid, errors: result.isValid ? "" : result.errorsText("\n") };
  } catch (err) {
    verdict = { path, valid: false, errors: `Validator exception: ${err && err.stack ? err.stack : err}` };
  }
  process.stdout.write(JSON.stringify(verdict) + "\n");
}
