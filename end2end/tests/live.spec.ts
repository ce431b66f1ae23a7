import { test, expect } from "@playwright/test";
import { bankFault, minutesAgo, newStaff, openUser, seedUser, signIn } from "./support";

test.afterEach(async ({ request }) => {
  await bankFault(request, newStaff(), {});
});

test("after a click every row reaches its end live, and the progress bar fills", async ({ page, request }) => {
  const staff = newStaff();
  const user = await seedUser(request, staff, [
    { lastTransactionRefreshDate: minutesAgo(90), persona: "salaried" },
    { lastTransactionRefreshDate: minutesAgo(90), persona: "gambler" },
    { lastTransactionRefreshDate: minutesAgo(90), persona: "savings" },
  ]);
  // A slow bank, so that the queued and running states can be seen.
  await bankFault(request, staff, { latencyMs: 1500 });
  await signIn(page, staff);
  await openUser(page, user);
  let navigations = 0;
  page.on("framenavigated", () => navigations++);

  await page.getByTestId("refresh").click();
  await expect(page.getByTestId("refresh-answer")).toHaveText("Triggered 3 of 3 accounts.");
  const bar = page.getByTestId("progress-bar");
  await expect(bar).toHaveAttribute("max", "3");
  await expect(page.getByTestId("live-0")).toHaveAttribute("data-state", /QUEUED|RUNNING/);
  await page.screenshot({ path: test.info().outputPath("refresh-running.png"), fullPage: true });
  for (const i of [0, 1, 2]) {
    await expect(page.getByTestId(`live-${i}`)).toHaveAttribute("data-state", "SUCCEEDED", { timeout: 15_000 });
    await expect(page.getByTestId(`live-${i}`)).toContainText(/Done: \d+ new transactions/);
  }
  await expect(bar).toHaveAttribute("value", "3");
  await expect(page.getByTestId("job-progress")).toHaveAttribute("data-status", "SUCCEEDED");
  // The rows moved on without a reload: just refreshed, so now rate-limited.
  await expect(page.getByTestId("last-refresh-0")).toHaveText("just now");
  await expect(page.getByTestId("preview-summary")).toHaveAttribute("data-status", "SKIPPED");
  expect(navigations).toBe(0);
  await page.screenshot({ path: test.info().outputPath("refresh-done.png"), fullPage: true });
});

test("a failing sandbox bank shows the failure reason on the row", async ({ page, request }) => {
  const staff = newStaff();
  const user = await seedUser(request, staff, [{ lastTransactionRefreshDate: minutesAgo(90) }]);
  await bankFault(request, staff, { kind: "SERVER_ERROR" });
  await signIn(page, staff);
  await openUser(page, user);
  await page.getByTestId("refresh").click();
  const row = page.getByTestId("live-0");
  await expect(row).toHaveAttribute("data-state", "FAILED", { timeout: 15_000 });
  await expect(row).toHaveText("Failed: the bank is unavailable (BANK_UNAVAILABLE)");
  await expect(page.getByTestId("job-progress")).toHaveAttribute("data-status", "FAILED");
});
