import { test, expect } from "@playwright/test";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { api, minutesAgo, newStaff, seedUser, signIn } from "./support";

let receiver: Server;

test.beforeAll(async () => {
  receiver = createServer((req, res) => {
    req.resume();
    req.on("end", () => res.writeHead(200).end("ok"));
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
});

test.afterAll(() => receiver.close());

test("the operations page charts the last 24 hours of refreshes, banks and webhooks, with the numbers in tables", async ({ page, request }) => {
  const staff = newStaff("Ops partner");
  const target = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
  const sub = await api(request, staff, "POST", "/v1/webhooks/subscriptions", {
    targetUrl: target,
    eventTypes: ["v1.account_transactions.on_demand_refresh.succeeded"],
  });
  expect(sub.status, JSON.stringify(sub.body)).toBe(201);
  const stale = { consentStatus: "ACTIVE", lastTransactionRefreshDate: minutesAgo(60) };
  const user = await seedUser(request, staff, [stale, stale]);
  const refresh = await api(request, staff, "POST", `/v1/users/${user}/accounts-refresh`);
  expect(refresh.status).toBe(201);
  // Both accounts fetched, and their webhooks delivered.
  await expect
    .poll(async () => (await api(request, staff, "GET", `/v1/users/${user}/accounts-refresh/${refresh.body.jobId}`)).body.status)
    .toBe("SUCCEEDED");
  await expect
    .poll(async () => (await api(request, staff, "GET", `/v1/webhooks/subscriptions/${sub.body.subscriptionId}/deliveries`)).body.data.length)
    .toBe(2);

  await signIn(page, staff);
  await page.getByRole("link", { name: "Operations" }).click();
  await expect(page.getByRole("heading", { name: "Operations" })).toBeVisible();
  await expect(page.getByTestId("refresh-chart")).toHaveAttribute("aria-label", "2 account refreshes in the last 24 hours, 0 failed.");
  const hour = page.getByTestId("refresh-hours").getByTestId("hour");
  await expect(hour).toHaveCount(1);
  await expect(hour.getByTestId("succeeded")).toHaveText("2");
  const bank = page.getByTestId("bank-latency").getByTestId("bank");
  await expect(bank).toHaveCount(1);
  await expect(bank.getByTestId("fetches")).toHaveText("2");
  await expect(page.getByTestId("webhook-chart")).toHaveAttribute("aria-label", /^2 webhook attempts in the last 24 hours, 2 succeeded \(100\.0 %\)/);
  await expect(page.getByTestId("webhook-hours").getByTestId("hour").getByTestId("succeeded")).toHaveText("2");
  // Two bars' worth of rectangles per hour, drawn on the server: the page needs no script.
  await expect(page.locator("[data-testid=refresh-chart] rect")).toHaveCount(48);
  await page.screenshot({ path: test.info().outputPath("operations.png"), fullPage: true });
});
