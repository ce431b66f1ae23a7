import { defineConfig } from "@playwright/test";
import { tmpdir } from "node:os";
import { join } from "node:path";

// The server under test: the debug build made by scripts/test, on its own port.
// FRESHET_E2E_BIN=../target/release/freshet checks the release build (wasm-opt'd) instead.
const port = Number(process.env.FRESHET_E2E_PORT ?? 3100);
const bin = process.env.FRESHET_E2E_BIN ?? "../target/debug/freshet";
// Screenshots of the main pages land in test-results/ (artifacts, not committed).
// A new database for every run, so that no earlier run's data (or schema) is seen.
// Computed once in the runner and inherited by its workers (which load this file again).
process.env.FRESHET_E2E_DB ??= `sqlite://${join(tmpdir(), `freshet-e2e-${Date.now()}.db`)}`;
process.env.FRESHET_E2E_BIN ??= "../target/debug/freshet";
process.env.FRESHET_E2E_PORT ??= String(port);
const db = process.env.FRESHET_E2E_DB;

export default defineConfig({
  testDir: "./tests",
  forbidOnly: !!process.env.CI,
  retries: 0,
  workers: 1,
  reporter: [["list"]],
  timeout: 30_000,
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    trace: "retain-on-failure",
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
      args: [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-quic",
      ],
    },
  },
  // The specs sign in some 25 times a minute from one address: lift the per-client sign-in
  // limit (the server's own tests cover it).
  webServer: {
    command: `${bin} serve --bind 127.0.0.1:${port} --site-root ../target/site --database-url ${db} --sandbox --insecure-webhook-targets --sign-ins-per-client-per-minute 1000`,
    url: `http://127.0.0.1:${port}/healthz`,
    reuseExistingServer: false,
    timeout: 30_000,
    stdout: "pipe",
    stderr: "pipe",
    // The server's warnings and errors in the test output; not a line per request.
    env: { RUST_LOG: "info,freshet::access=warn" },
  },
});
