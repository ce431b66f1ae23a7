import { test, expect } from "@playwright/test";
import { api, minutesAgo, newStaff, openUser, seedUser, signIn } from "./support";

test("a job's page shows each account's state, its events and their webhook deliveries", async ({ page, request }) => {
  const staff = newStaff();
  const user = await seedUser(request, staff, [{ lastTransactionRefreshDate: minutesAgo(60) }, { consentStatus: "EXPIRED" }]);
  await signIn(page, staff);
  await openUser(page, user);
  await page.getByTestId("refresh").click();
  await expect(page.getByTestId("live-0")).toHaveAttribute("data-state", "SUCCEEDED", { timeout: 15_000 });
  await page.getByTestId("job-progress").getByRole("link").click();
  const job = page.getByTestId("job-page");
  await expect(job).toContainText("succeeded");
  await expect(job).toContainText("v1.account_transactions.on_demand_refresh.succeeded");
  await expect(job).toContainText("no webhook subscription wanted it");
  await page.screenshot({ path: test.info().outputPath("job.png"), fullPage: true });
  await page.getByRole("link", { name: "Jobs" }).click();
  await expect(page.getByTestId("jobs").locator("tbody tr")).toHaveCount(1);
});

test("an API key is shown once when created, works, and stops working when revoked", async ({ page, request }) => {
  const staff = newStaff();
  await signIn(page, staff);
  await page.getByRole("link", { name: "API keys" }).click();
  await expect(page.getByTestId("key")).toHaveCount(1);
  await page.getByTestId("create-key").click();
  const key = (await page.getByTestId("secret").textContent())!.trim();
  expect(key).toMatch(/^fsk_[0-9a-f]{48}$/);
  expect((await api(request, { ...staff, apiKey: key }, "POST", "/v1/users")).status).toBe(201);
  await expect(page.getByTestId("key")).toHaveCount(2);
  await page.reload();
  await expect(page.getByTestId("secret")).toHaveCount(0);
  await page.locator(`[data-testid=key][data-prefix="${key.slice(0, 12)}"]`).getByTestId("revoke").click();
  await expect(page.locator(`[data-testid=key][data-prefix="${key.slice(0, 12)}"]`)).toContainText("revoked");
  expect((await api(request, { ...staff, apiKey: key }, "POST", "/v1/users")).status).toBe(401);
  expect((await api(request, staff, "POST", "/v1/users")).status).toBe(201);
});

test("the sandbox creates a user in a chosen state, and the clock moves", async ({ page, request }) => {
  const staff = newStaff();
  await signIn(page, staff);
  await page.getByRole("link", { name: "Sandbox" }).click();
  await page.screenshot({ path: test.info().outputPath("sandbox.png"), fullPage: true });
  await page.getByTestId("preset").selectOption("fresh");
  await page.getByTestId("create-user").click();
  // A plain form: the server goes on to the new user's page.
  await expect(page).toHaveURL(/\/users\/[0-9a-f-]{36}$/);
  await expect(page.locator("[data-testid=user-page][data-hydrated=true]")).toBeVisible();
  await expect(page.getByTestId("preview-summary")).toHaveAttribute("data-status", "SKIPPED");
  await expect(page.locator("tbody tr[data-account-id]")).toHaveCount(2);
  await page.getByRole("link", { name: "Sandbox" }).click();
  await page.getByTestId("shift-5").click();
  await expect(page.getByTestId("sandbox-note")).toHaveText(
    "Your sandbox clock moved 5 minutes forward (other partners' time did not move).",
  );
  // The clock is the partner's own: its API sees the same offset.
  const clock = await api(request, staff, "GET", "/sandbox/v1/clock");
  expect(clock.status).toBe(200);
  expect(clock.body.offsetSeconds).toBe(300);
});
