import { test, expect } from "@playwright/test";
import { PreviewPage } from "./pages/preview-page";

// The sample user (server/src/portal.rs): row 0 refreshed 25 min ago (stale), row 1 five
// minutes ago (fresh), row 2 with expired consent. Interval: 20 minutes.

test("the server renders the accounts and their preview before any script runs", async ({ browser }) => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto("/");
  await expect(page.getByRole("table")).toContainText("Monzo");
  await expect(page.getByTestId("preview-text")).toHaveText("Refresh will trigger 2 of 3 accounts.");
  await expect(page.getByTestId("user-preview")).toHaveAttribute("data-hydrated", "false");
  await context.close();
});

test("after hydration the wasm rules preview every edit at once, with no server round-trip", async ({ page }) => {
  const preview = new PreviewPage(page);
  await preview.open();

  // As served: the stale account pulls the fresh one along; the expired one is skipped.
  await expect(preview.summary).toHaveAttribute("data-status", "TRIGGERED");
  await expect(preview.text).toHaveText("Refresh will trigger 2 of 3 accounts.");
  await expect(preview.outcome(0)).toHaveAttribute("data-outcome", "TRIGGERED");
  await expect(preview.outcome(1)).toHaveAttribute("data-outcome", "TRIGGERED");
  await expect(preview.outcome(2)).toHaveAttribute("data-outcome", "ACCOUNT_EXPIRED");

  // From here on, any request to the server would mean the preview is not computed locally.
  const requests: string[] = [];
  page.on("request", (r) => requests.push(r.url()));

  // Make the stale account fresh: everything eligible is now rate-limited, with a countdown
  // to the earliest moment (row 0: 3 min ago -> 17 min left; row 1: 5 min ago -> 15 min left).
  await preview.setMinutesAgo(0, 3);
  await expect(preview.summary).toHaveAttribute("data-status", "SKIPPED");
  await expect(preview.outcome(0)).toHaveAttribute("data-outcome", "RATE_LIMITED");
  await expect(preview.outcome(1)).toHaveAttribute("data-outcome", "RATE_LIMITED");
  await expect(preview.text).toContainText("Rate-limited: next refresh possible in 1");
  const first = Number(await preview.countdown.getAttribute("data-seconds"));
  expect(first).toBeGreaterThan(14 * 60);
  expect(first).toBeLessThanOrEqual(15 * 60);

  // The countdown ticks each second on its own.
  await expect.poll(async () => Number(await preview.countdown.getAttribute("data-seconds"))).toBeLessThan(first);

  // Expire the fresh account's consent: row 0 alone holds the limit now (17 min).
  await preview.setConsent(1, "EXPIRED");
  await expect(preview.outcome(1)).toHaveAttribute("data-outcome", "ACCOUNT_EXPIRED");
  await expect(preview.countdown).toHaveText(/^1[67]:\d\d$/);

  // A never-refreshed account is stale: everything eligible triggers again.
  await preview.setMinutesAgo(0, "");
  await expect(preview.outcome(0)).toHaveAttribute("data-outcome", "TRIGGERED");
  await expect(preview.text).toHaveText("Refresh will trigger 1 of 3 accounts.");
  await expect(preview.countdown).toHaveCount(0);

  // A refresh in flight counts as refreshed when it was triggered: rate-limited for 20 min.
  await preview.setInFlight(0, true);
  await expect(preview.outcome(0)).toHaveAttribute("data-outcome", "RATE_LIMITED");
  await expect(preview.countdown).toHaveText(/^(20:00|19:5\d)$/);

  // Exactly the interval ago is stale (worked example 5).
  await preview.setInFlight(0, false);
  await preview.setMinutesAgo(0, 20);
  await expect(preview.outcome(0)).toHaveAttribute("data-outcome", "TRIGGERED");

  expect(requests).toEqual([]);
});
