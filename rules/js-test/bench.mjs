// evaluate() in wasm under Node, for the users of rules/benches/evaluate.rs: accounts/s.
// The loop runs inside wasm (evaluateRepeated), so this times the rules, not the JS<->wasm
// crossing. Prints one JSON line per case: {shape, accounts, medianAccountsPerSecond}.
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { initSync, evaluateRepeated } from "../pkg/freshet_rules.js";

initSync({ module: readFileSync(new URL("../pkg/freshet_rules_bg.wasm", import.meta.url)) });

const NOW = Date.parse("2026-11-26T12:00:00.000Z");
function user(n, stale) {
  return Array.from({ length: n }, (_, i) => {
    const accountId = `acc-${String(i).padStart(5, "0")}`;
    if (i % 10 === 9) return { accountId, consentStatus: "EXPIRED" };
    if (stale && i === 0) return { accountId, consentStatus: "ACTIVE" };
    const minutes = ((i * 7) % 19) + 1;
    return { accountId, consentStatus: "ACTIVE", lastTransactionRefreshDate: new Date(NOW - minutes * 60_000).toISOString() };
  });
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const [shape, stale] of [["rate_limited", false], ["triggered", true]]) {
  for (const n of [1, 10, 1000]) {
    const input = { now: new Date(NOW).toISOString(), accounts: user(n, stale) };
    // Calibrate to ~200 ms a sample, then take the median of 15 samples.
    let iterations = 1000;
    for (;;) {
      const t = performance.now();
      evaluateRepeated(input, iterations);
      const ms = performance.now() - t;
      if (ms > 100) { iterations = Math.ceil(iterations * (200 / ms)); break; }
      iterations *= 4;
    }
    const rates = [];
    for (let s = 0; s < 15; s++) {
      const t = performance.now();
      const decided = evaluateRepeated(input, iterations);
      rates.push(decided / ((performance.now() - t) / 1000));
    }
    console.log(JSON.stringify({ shape, accounts: n, medianAccountsPerSecond: Math.round(median(rates)) }));
  }
}
