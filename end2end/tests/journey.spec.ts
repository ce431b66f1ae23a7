// The direct connection journey on a production-mode server (no --sandbox), with the sandbox
// bank in its own process over HTTPS (a private CA, registered with `freshet bank add` as the
// bank printed it): API creates user + session → the browser opens connectionUrl → picks the
// bank → approves at the bank → lands on the partner's page with the termination token →
// PUT /v1/sessions/completed → accounts with balances → signed user_initiated webhooks → an
// on-demand refresh → its signed webhook. And a denial, which connects nothing.
import { test, expect } from "@playwright/test";
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { createServer, type Server } from "node:http";
import { createHmac } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { createInterface } from "node:readline";

const BIN = process.env.FRESHET_E2E_BIN!;
const PORT = Number(process.env.FRESHET_E2E_PORT ?? 3100) + 7;
const BASE = `http://127.0.0.1:${PORT}`;

// The bank's certificate is signed by a CA the browser does not know (freshet trusts it
// through --ca-file): the browser is told to go on, as a user's would be for a real bank.
test.use({ ignoreHTTPSErrors: true });

let bank: ChildProcess;
let server: ChildProcess;
let partnerSite: Server;
let apiKey: string;
const hooks: { type: string; body: string; signature: string }[] = [];

function listen(s: Server): Promise<number> {
  return new Promise((resolve) => s.listen(0, "127.0.0.1", () => resolve((s.address() as AddressInfo).port)));
}

/** Splits the printed `freshet bank add …` line as a shell would (one quoted argument). */
function shellWords(line: string): string[] {
  const words: string[] = [];
  for (const m of line.matchAll(/"([^"]*)"|(\S+)/g)) words.push(m[1] ?? m[2]);
  return words;
}

test.beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), "freshet-journey-"));
  const db = `sqlite://${join(dir, "freshet.db")}`;
  const f = (name: string) => join(dir, name);
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f("ca.key"), "-out", f("ca.pem"),
    "-days", "2", "-subj", "/CN=freshet e2e CA"], { stdio: "ignore" });
  execFileSync("openssl", ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", f("bank.key"), "-out", f("bank.csr"),
    "-subj", "/CN=localhost"], { stdio: "ignore" });
  execFileSync("sh", ["-c", `printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\n' > ${f("ext.cnf")}`]);
  execFileSync("openssl", ["x509", "-req", "-in", f("bank.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"),
    "-CAcreateserial", "-out", f("bank.pem"), "-days", "2", "-extfile", f("ext.cnf")], { stdio: "ignore" });

  // The partner's own site: where users come back to, and where webhooks arrive.
  partnerSite = createServer((req, res) => {
    if (req.method === "POST") {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        hooks.push({ type: JSON.parse(body).type, body, signature: String(req.headers["x-signature"]) });
        res.writeHead(200).end("ok");
      });
      return;
    }
    const q = new URL(req.url!, "http://partner").searchParams;
    res.writeHead(200, { "content-type": "text/html" }).end(
      `<!doctype html><title>Partner</title><h1>Back at Acme Lending</h1>` +
        `<p id="token">${q.get("sessionTerminationToken") ?? ""}</p><p id="error">${q.get("error") ?? ""}</p>` +
        `<p id="correlation">${q.get("correlationId") ?? ""}</p>`,
    );
  });
  await listen(partnerSite);

  bank = spawn(BIN, ["sandbox-bank", "--bind", "127.0.0.1:0", "--client-secret-file", f("bank.secret"),
    "--redirect-uri", `${BASE}/connect/callback`, "--tls-cert", f("bank.pem"), "--tls-key", f("bank.key"),
    "--tls-ca", f("ca.pem")], { stdio: ["ignore", "pipe", "ignore"] });
  const line: string = await new Promise((resolve) => createInterface({ input: bank.stdout! }).once("line", resolve));
  expect(line).toContain("--api-base https://127.0.0.1:");
  execFileSync(BIN, [...shellWords(line).slice(1), "--database-url", db]);

  // A production server: no --sandbox. Loopback http targets for the partner's site; a
  // one-second refresh interval so that the on-demand refresh can follow the first fetch.
  server = spawn(BIN, ["serve", "--bind", `127.0.0.1:${PORT}`, "--database-url", db, "--site-root", "../target/site",
    "--insecure-webhook-targets", "--refresh-interval-seconds", "1"], { stdio: "ignore" });
  await expect(async () => {
    const r = await fetch(`${BASE}/healthz`);
    expect(r.ok).toBeTruthy();
  }).toPass({ timeout: 15_000 });
  apiKey = JSON.parse(execFileSync(BIN, ["partner", "create", "--name", "Acme Lending", "--database-url", db]).toString()).apiKey;
});

test.afterAll(() => {
  server?.kill();
  bank?.kill();
  partnerSite?.close();
});

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(`${BASE}${path}`, {
    method,
    headers: { "x-api-key": apiKey, ...(body ? { "content-type": "application/json" } : {}), ...headers },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

function signedWith(secret: string, hook: { body: string; signature: string }) {
  const key = Buffer.from(secret.slice("whsec_".length), "base64");
  const want = "sha256=" + createHmac("sha256", key).update(hook.body).digest("hex");
  return hook.signature.split(",").includes(want);
}

test("a user connects their bank through the journey, and the partner hears of every account", async ({ page }) => {
  const partnerBase = `http://127.0.0.1:${(partnerSite.address() as AddressInfo).port}`;
  const sub = await call("POST", "/v1/webhooks/subscriptions", {
    targetUrl: `${partnerBase}/hooks`,
    eventTypes: ["v1.account_transactions.user_initiated.succeeded", "v1.account_transactions.on_demand_refresh.succeeded"],
  });
  expect(sub.status).toBe(201);
  const banks = await call("GET", "/v1/banks");
  expect(banks.body.data).toEqual([{ bankId: "sandbox-bank", name: "freshet Sandbox Bank", status: "AVAILABLE" }]);
  const user = (await call("POST", "/v1/users")).body.userId;
  const session = await call("POST", "/v1/sessions", { userId: user, partnerRedirectUrl: `${partnerBase}/back`, correlationId: "loan-42" });
  expect(session.status).toBe(201);

  await page.setViewportSize({ width: 390, height: 844 }); // a phone
  await page.goto(session.body.connectionUrl);
  await expect(page.getByRole("heading", { name: "Connect your bank to Acme Lending" })).toBeVisible();
  await page.getByRole("button", { name: "freshet Sandbox Bank" }).click();
  // At the bank, over HTTPS.
  await expect(page.getByRole("heading", { name: "Share your accounts" })).toBeVisible();
  expect(page.url()).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/authorize\?/);
  await page.getByLabel("Arranged Overdraft").check();
  await page.getByRole("button", { name: "Approve" }).click();
  // Back at the partner's, with the token to complete the session.
  await expect(page.getByRole("heading", { name: "Back at Acme Lending" })).toBeVisible();
  await expect(page.locator("#correlation")).toHaveText("loan-42");
  const token = (await page.locator("#token").textContent())!;
  expect(token).toMatch(/^[0-9a-f]{64}$/);

  const done = await call("PUT", "/v1/sessions/completed", undefined, { authorization: `Bearer ${token}` });
  expect(done.status).toBe(200);
  expect(done.body.status).toBe("COMPLETED");
  const accounts = (await call("GET", `/v1/users/${user}/accounts`)).body.data;
  expect(accounts).toHaveLength(2);
  for (const a of accounts) {
    expect(a.providerName).toBe("freshet Sandbox Bank");
    expect(a.balance).toMatch(/^-?\d+\.\d{2}$/);
  }
  // The first fetch of each account, announced by a signed webhook.
  await expect.poll(() => hooks.filter((h) => h.type.endsWith("user_initiated.succeeded")).length, { timeout: 15_000 }).toBe(2);
  expect(hooks.every((h) => signedWith(sub.body.secret, h))).toBeTruthy();

  // An on-demand refresh (the interval is one second here) and its webhooks.
  await new Promise((r) => setTimeout(r, 1100));
  const refresh = await call("POST", `/v1/users/${user}/accounts-refresh`);
  expect(refresh.status).toBe(201);
  await expect.poll(() => hooks.filter((h) => h.type.endsWith("on_demand_refresh.succeeded")).length, { timeout: 15_000 }).toBe(2);
  const onDemand = hooks.filter((h) => h.type.endsWith("on_demand_refresh.succeeded"));
  expect(onDemand.every((h) => JSON.parse(h.body).payload.jobId === refresh.body.jobId)).toBeTruthy();
  expect(onDemand.every((h) => signedWith(sub.body.secret, h))).toBeTruthy();
});

test("a user who denies at the bank comes back with access_denied and nothing is connected", async ({ page }) => {
  const partnerBase = `http://127.0.0.1:${(partnerSite.address() as AddressInfo).port}`;
  const user = (await call("POST", "/v1/users")).body.userId;
  const session = await call("POST", "/v1/sessions", { userId: user, partnerRedirectUrl: `${partnerBase}/back` });
  await page.goto(session.body.connectionUrl);
  await page.getByRole("button", { name: "freshet Sandbox Bank" }).click();
  await page.getByRole("button", { name: "Deny" }).click();
  await expect(page.locator("#error")).toHaveText("access_denied");
  expect((await call("GET", `/v1/users/${user}/accounts`)).body.data).toEqual([]);
});

/** A new user connected through the journey in `page` (approved as `persona`); returns the
 *  user, its session and the callback URL the bank sent the browser to. */
async function connected(page: import("@playwright/test").Page, persona: string) {
  const partnerBase = `http://127.0.0.1:${(partnerSite.address() as AddressInfo).port}`;
  const user = (await call("POST", "/v1/users")).body.userId;
  const session = (await call("POST", "/v1/sessions", { userId: user, partnerRedirectUrl: `${partnerBase}/back` })).body;
  await page.goto(session.connectionUrl);
  await page.getByRole("button", { name: "freshet Sandbox Bank" }).click();
  await page.getByLabel(persona).check();
  const callback = page.waitForRequest((r) => r.url().startsWith(`${BASE}/connect/callback`));
  await page.getByRole("button", { name: "Approve" }).click();
  await expect(page.getByRole("heading", { name: "Back at Acme Lending" })).toBeVisible();
  return { user, session, callback: (await callback).url() };
}

test("a forged or replayed callback changes nothing", async ({ page }) => {
  const { user, callback } = await connected(page, "Gambler");
  const ids = async () => (await call("GET", `/v1/users/${user}/accounts`)).body.data.map((a: { accountId: string }) => a.accountId);
  const before = await ids();
  expect(before).toHaveLength(2);
  // The same callback again (a replayed code and state), and a forged one.
  for (const url of [callback, `${BASE}/connect/callback?state=forged&code=stolen`]) {
    const answer = await page.goto(url);
    expect(answer!.status()).toBe(400);
    await expect(page.getByRole("alert")).toContainText("not valid");
  }
  expect(await ids()).toEqual(before);
});

test("the management page re-authenticates and unlinks, and the partner hears both", async ({ page }) => {
  const partnerBase = `http://127.0.0.1:${(partnerSite.address() as AddressInfo).port}`;
  const sub = await call("POST", "/v1/webhooks/subscriptions", {
    targetUrl: `${partnerBase}/consents`,
    eventTypes: ["v1.consent.renewed", "v1.consent.revoked"],
  });
  expect(sub.status).toBe(201);
  const { user, session } = await connected(page, "Returned DD");
  const before = (await call("GET", `/v1/users/${user}/accounts`)).body.data;

  await page.goto(session.managementUrl);
  await expect(page.getByRole("heading", { name: "Your connections with Acme Lending" })).toBeVisible();
  await page.getByRole("button", { name: "Re-authenticate with freshet Sandbox Bank" }).click();
  await page.getByLabel("Returned DD").check();
  await page.getByRole("button", { name: "Approve" }).click();
  await expect(page.getByRole("heading", { name: "Back at Acme Lending" })).toBeVisible();
  const renewed = (await call("GET", `/v1/users/${user}/accounts`)).body.data;
  expect(renewed.map((a: { accountId: string }) => a.accountId)).toEqual(before.map((a: { accountId: string }) => a.accountId));
  expect(Date.parse(renewed[0].consentExpiresAt)).toBeGreaterThan(Date.parse(before[0].consentExpiresAt));
  await expect.poll(() => hooks.filter((h) => h.type === "v1.consent.renewed").length, { timeout: 15_000 }).toBe(1);

  await page.goto(session.managementUrl);
  await page.getByRole("button", { name: "Unlink freshet Sandbox Bank" }).click();
  await expect(page.getByText("No longer shared.")).toBeVisible();
  const unlinked = (await call("GET", `/v1/users/${user}/accounts`)).body.data;
  expect(unlinked.every((a: { consentStatus: string }) => a.consentStatus === "EXPIRED")).toBeTruthy();
  await expect.poll(() => hooks.filter((h) => h.type === "v1.consent.revoked").length, { timeout: 15_000 }).toBe(1);
  const revoked = JSON.parse(hooks.find((h) => h.type === "v1.consent.revoked")!.body);
  expect(revoked.payload.reason).toBe("USER_UNLINKED");
  expect(hooks.filter((h) => h.type.startsWith("v1.consent.")).every((h) => signedWith(sub.body.secret, h))).toBeTruthy();
  const refresh = await call("POST", `/v1/users/${user}/accounts-refresh`);
  expect(refresh.status).toBe(200);
  expect(refresh.body.metadata.accounts.every((a: { reason: string }) => a.reason === "ACCOUNT_EXPIRED")).toBeTruthy();
});
