import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { expect, type APIRequestContext, type Page } from "@playwright/test";

/** What a test seeds: a partner of its own (so tests never see each other's data), its API
 *  key, and a portal user of it. Created with the real CLI against the server's database. */
export interface Staff {
  partnerId: string;
  apiKey: string;
  email: string;
  password: string;
}

const BIN = process.env.FRESHET_E2E_BIN!;
const DB = process.env.FRESHET_E2E_DB!;

export function newStaff(name = "E2E partner"): Staff {
  const partner = JSON.parse(execFileSync(BIN, ["partner", "create", "--name", name, "--database-url", DB]).toString());
  const email = `staff-${randomUUID()}@e2e.example`;
  const password = "correct horse battery";
  execFileSync(BIN, ["portal-user", "create", "--partner", partner.partnerId, "--email", email, "--database-url", DB], {
    input: password,
  });
  return { partnerId: partner.partnerId, apiKey: partner.apiKey, email, password };
}

/** Calls the partner API; returns status and JSON body. */
export async function api(request: APIRequestContext, staff: Staff, method: string, path: string, body?: unknown) {
  const response = await request.fetch(path, {
    method,
    headers: { "x-api-key": staff.apiKey, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    data: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status(), body: text ? JSON.parse(text) : null };
}

export const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000).toISOString();

/** A user with accounts in the given states (sandbox API); returns its id. */
export async function seedUser(request: APIRequestContext, staff: Staff, accounts: object[]): Promise<string> {
  const user = await api(request, staff, "POST", "/v1/users");
  expect(user.status).toBe(201);
  if (accounts.length > 0) {
    const connected = await api(request, staff, "POST", `/sandbox/v1/users/${user.body.userId}/accounts`, { accounts });
    expect(connected.status, JSON.stringify(connected.body)).toBe(201);
  }
  return user.body.userId;
}

/** The sandbox bank's behaviour for every account (it is shared: reset it after use). */
export async function bankFault(request: APIRequestContext, staff: Staff, fault: object) {
  const r = await api(request, staff, "POST", "/sandbox/v1/bank/faults", fault);
  expect(r.status).toBe(204);
}

export async function signIn(page: Page, staff: Staff) {
  await page.goto("/sign-in");
  await page.getByLabel("Email").fill(staff.email);
  await page.getByLabel("Password").fill(staff.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByTestId("signed-in-as")).toContainText(staff.email);
}

/** Opens a user's page and waits until the wasm has taken it over (a click before that is lost). */
export async function openUser(page: Page, userId: string) {
  await page.goto(`/users/${userId}`);
  await expect(page.locator("[data-testid=user-page][data-hydrated=true]")).toBeVisible();
}
