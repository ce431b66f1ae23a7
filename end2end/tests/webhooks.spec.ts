import { test, expect } from "@playwright/test";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { newStaff, signIn } from "./support";

let receiver: Server;
const received: { id: string; body: string }[] = [];

test.beforeAll(async () => {
  receiver = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      received.push({ id: String(req.headers["webhook-id"]), body });
      res.writeHead(200, { "content-type": "text/plain" }).end("thanks");
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
});

test.afterAll(() => receiver.close());

test("a target the server refuses comes back with the reason", async ({ page }) => {
  const staff = newStaff();
  await signIn(page, staff);
  await page.goto("/webhooks");
  await page.getByTestId("target-url").fill("ftp://example.com/hooks");
  await page.getByTestId("subscribe").click();
  await expect(page.getByTestId("subscribe-error")).toContainText("targetUrl must be an absolute https URL");
  await expect(page.getByTestId("target-url")).toHaveValue("ftp://example.com/hooks");
});

test("subscribe a local receiver, see a delivery with its status code, and redeliver it", async ({ page }) => {
  const staff = newStaff();
  const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
  await signIn(page, staff);
  await page.getByRole("link", { name: "Webhooks" }).click();
  await page.screenshot({ path: test.info().outputPath("webhooks.png"), fullPage: true });
  await page.getByTestId("target-url").fill(url);
  await page.getByTestId("subscribe").click();
  // On to the new subscription, which shows its secret this once.
  await expect(page.getByTestId("subscription-target")).toHaveText(url);
  await expect(page.getByTestId("secret")).toHaveText(/^whsec_[A-Za-z0-9+/]{43}=$/);
  await page.reload();
  await expect(page.getByTestId("secret")).toHaveCount(0);

  await page.getByTestId("send-test").click();
  // A plain form: the server sends the browser back, saying what it did; the delivery
  // shows once its attempt is logged.
  await expect(page.getByTestId("control-note")).toHaveText("Test event queued: it appears in the log below in a moment.");
  const attempt = page.getByTestId("attempt");
  await expect(async () => {
    await page.reload();
    await expect(attempt.getByTestId("attempt-status")).toHaveText("200", { timeout: 500 });
  }).toPass({ timeout: 10_000 });
  const eventId = (await attempt.getAttribute("data-event-id"))!;
  expect(received.map((r) => r.id)).toContain(eventId);
  await expect(page.getByTestId("chart")).toBeVisible();
  await page.screenshot({ path: test.info().outputPath("subscription.png"), fullPage: true });

  await attempt.getByTestId("redeliver").click();
  await expect(page.getByTestId("control-note")).toHaveText("Queued again: the new attempt appears in the log below.");
  await expect(async () => {
    await page.reload();
    await expect(page.getByTestId("attempt-status")).toHaveText(["200", "200"], { timeout: 500 });
  }).toPass({ timeout: 10_000 });
  expect(received.filter((r) => r.id === eventId)).toHaveLength(2);

  await page.getByTestId("rotate").click();
  await expect(page.getByTestId("revealed-secret")).toContainText("The old one keeps signing for 24 hours.");
  await expect(page.getByTestId("secret")).toHaveText(/^whsec_/);
});
