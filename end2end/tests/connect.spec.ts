// The portal's side of the connection journey: the Banks page, and a connection link made for
// a user from their page (shown once), which opens the journey's page with the partner's name.
import { test, expect } from "@playwright/test";
import { api, newStaff, openUser, seedUser, signIn } from "./support";

test("the Banks page lists the banks with their status", async ({ page }) => {
  const staff = newStaff("Banks partner");
  await signIn(page, staff);
  await page.getByRole("link", { name: "Banks" }).click();
  await expect(page.getByRole("heading", { name: "Banks" })).toBeVisible();
  const sandbox = page.getByTestId("bank").filter({ hasText: "freshet Sandbox Bank" });
  await expect(sandbox).toHaveAttribute("data-status", "AVAILABLE");
  await expect(sandbox).toContainText("available");
});

test("a connection link is made from the user's page, shown once, and opens the journey", async ({ page, request }) => {
  const staff = newStaff("Linking partner");
  await signIn(page, staff);
  const user = await seedUser(request, staff, []);
  await openUser(page, user);
  // Refused: the user must come back to https.
  await page.getByTestId("return-url").fill("http://partner.example/back");
  await page.getByTestId("send-link").click();
  await expect(page.getByTestId("link-error")).toContainText("partnerRedirectUrl must be an absolute https URL");
  await page.getByTestId("return-url").fill("https://partner.example/back");
  await page.getByTestId("send-link").click();
  const link = page.getByTestId("connection-link").locator("code");
  await expect(link).toContainText("/connect/");
  const url = (await link.textContent())!;
  expect(url).toMatch(/\/connect\/[0-9a-f-]{36}\?partnerToken=[0-9a-f]{64}$/);
  // Shown once: the same page again does not show it.
  await page.reload();
  await expect(page.getByTestId("connection-link")).toHaveCount(0);
  await page.goto(url);
  await expect(page.getByRole("heading", { name: "Connect your bank to Linking partner" })).toBeVisible();
});

test("on a sandbox server a user connects at the sandbox bank through the journey; the user's page shows the connection until it is unlinked; a session past its 30 minutes is gone", async ({ page, request, baseURL }) => {
  const staff = newStaff("Sandbox lender");
  const user = (await api(request, staff, "POST", "/v1/users")).body.userId;
  /** A session for the user, driven through the bank (approved as `persona`) to the
   *  sandbox's stand-in for the partner's page; returns it and its termination token. */
  const throughTheBank = async (persona: string) => {
    const session = await api(request, staff, "POST", "/v1/sessions", { userId: user, partnerRedirectUrl: `${baseURL}/sandbox/return`, correlationId: "c-1" });
    expect(session.status).toBe(201);
    await page.goto(session.body.connectionUrl);
    await expect(page.getByRole("heading", { name: "Connect your bank to Sandbox lender" })).toBeVisible();
    await page.getByRole("button", { name: "freshet Sandbox Bank" }).click();
    await page.getByLabel(persona).check();
    await page.getByRole("button", { name: "Approve" }).click();
    await expect(page.getByTestId("outcome")).toHaveText("The user connected their bank.");
    const command = (await page.getByTestId("complete").textContent())!;
    return { session: session.body, token: /Bearer ([0-9a-f]{64})/.exec(command)![1] };
  };
  const complete = (token: string) =>
    request.fetch("/v1/sessions/completed", { method: "PUT", headers: { "x-api-key": staff.apiKey, authorization: `Bearer ${token}` } });

  const first = await throughTheBank("Gambler");
  expect((await complete(first.token)).status()).toBe(200);
  const accounts = (await api(request, staff, "GET", `/v1/users/${user}/accounts`)).body.data;
  expect(accounts.map((a: { bankId: string }) => a.bankId)).toEqual(["sandbox", "sandbox"]);

  // The user's page: the connection, the consent renewing in about 90 days.
  await signIn(page, staff);
  await openUser(page, user);
  const connection = page.getByTestId("connection-0");
  await expect(connection).toContainText("freshet Sandbox Bank");
  await expect(connection).toContainText("current account, savings");
  await expect(page.getByTestId("renews-0")).toHaveText(/^renews in (89|90) d$/);
  await expect(page.getByTestId("renews-0")).toHaveAttribute("data-expired", "false");

  // A session the partner leaves waiting: 31 minutes on (the partner's sandbox clock), it
  // cannot be completed, reads EXPIRED, and its links say so.
  const late = await throughTheBank("Returned DD");
  const shifted = await api(request, staff, "POST", "/sandbox/v1/clock", { offsetSeconds: 31 * 60 });
  expect(shifted.status).toBe(200);
  const refused = await complete(late.token);
  expect(refused.status()).toBe(404);
  expect((await refused.json()).code).toBe("SESSION_NOT_FOUND");
  expect((await api(request, staff, "GET", `/v1/sessions/${late.session.sessionId}`)).body.status).toBe("EXPIRED");
  const gone = await page.goto(late.session.connectionUrl);
  expect(gone!.status()).toBe(410);
  await expect(page.getByRole("alert")).toContainText("This link has expired");

  // The user unlinks the bank from a new session's management page: the badge turns.
  const manage = await api(request, staff, "POST", "/v1/sessions", { userId: user, partnerRedirectUrl: `${baseURL}/sandbox/return` });
  await page.goto(manage.body.managementUrl);
  await page.getByRole("button", { name: "Unlink freshet Sandbox Bank" }).first().click();
  await openUser(page, user);
  await expect(page.getByTestId("connection-0")).toContainText("freshet Sandbox Bank");
  await expect(page.locator("[data-testid^=renews-][data-expired=true]").first()).toHaveText("expired");
});
