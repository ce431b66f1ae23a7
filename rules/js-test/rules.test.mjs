// The rules' JavaScript package (rules/pkg, built by wasm-bindgen --target web) under Node:
// the same vectors as the native and wasm tests, through the package's public functions.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { initSync, evaluate, preview } from "../pkg/freshet_rules.js";

initSync({ module: readFileSync(new URL("../pkg/freshet_rules_bg.wasm", import.meta.url)) });
const { vectors } = JSON.parse(readFileSync(new URL("../vectors/refresh-vectors.json", import.meta.url)));

test("the package agrees with every vector of the shared file", () => {
  assert.ok(vectors.length >= 30);
  for (const v of vectors) {
    assert.deepEqual(evaluate(v.input), v.expected, v.name);
  }
});

test("preview explains a triggered refresh and counts the accounts", () => {
  const p = preview({
    now: "2026-11-26T12:00:00.000Z",
    accounts: [
      { accountId: "a", consentStatus: "ACTIVE", lastTransactionRefreshDate: "2026-11-26T11:30:00.000Z" },
      { accountId: "b", consentStatus: "EXPIRED" },
    ],
  });
  assert.equal(p.summary, "Refresh will trigger 1 of 2 accounts.");
  assert.equal(p.triggered, 1);
  assert.equal(p.total, 2);
  assert.equal(p.decision.status, "TRIGGERED");
  assert.equal(p.secondsUntilNextRefresh, undefined);
});

test("preview counts down to the next refresh when everything is rate-limited", () => {
  const p = preview({
    now: "2026-11-26T12:00:00.000Z",
    accounts: [{ accountId: "a", consentStatus: "ACTIVE", lastTransactionRefreshDate: "2026-11-26T11:47:29.000Z" }],
  });
  assert.equal(p.secondsUntilNextRefresh, 449);
  assert.equal(p.summary, "Rate-limited: next refresh possible in 7:29.");
  assert.equal(p.decision.nextRefreshAvailableAt, "2026-11-26T12:07:29.000Z");
});

test("API Account objects can be passed as they are (extra fields are ignored)", () => {
  const account = {
    accountId: "3f0c", providerName: "Monzo", accountType: "CURRENT", currency: "GBP", balance: "12.30",
    consentStatus: "ACTIVE", consentExpiresAt: "2027-01-01T00:00:00.000Z",
    lastTransactionRefreshDate: "2026-11-26T11:59:00.000Z",
  };
  const d = evaluate({ now: "2026-11-26T12:00:00.000Z", accounts: [account] });
  assert.deepEqual(d.accounts, [
    { accountId: "3f0c", outcome: "SKIPPED", reason: "RATE_LIMITED", nextEligibleAt: "2026-11-26T12:19:00.000Z" },
  ]);
});

test("bad input is refused with a clear error", () => {
  assert.throws(() => evaluate({ now: "yesterday", accounts: [] }), /invalid input/);
  assert.throws(() => evaluate({ now: "2026-11-26T12:00:00Z", accounts: [{ accountId: "a", consentStatus: "MAYBE" }] }), /invalid input/);
  assert.throws(() => evaluate({ now: "2026-11-26T12:00:00Z", accounts: [], intervalSeconds: 0 }), /positive/);
});
