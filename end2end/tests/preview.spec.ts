import { test, expect } from "@playwright/test";
import { minutesAgo, newStaff, openUser, seedUser, signIn } from "./support";

// Each case: accounts as seeded, and what the server must then answer.
const cases: { name: string; accounts: object[]; status: number }[] = [
  { name: "stale", accounts: [{ lastTransactionRefreshDate: minutesAgo(45) }, { lastTransactionRefreshDate: minutesAgo(3) }], status: 201 },
  { name: "fresh", accounts: [{ lastTransactionRefreshDate: minutesAgo(4) }, { lastTransactionRefreshDate: minutesAgo(9) }], status: 200 },
  { name: "expired", accounts: [{ consentStatus: "EXPIRED", lastTransactionRefreshDate: minutesAgo(600) }], status: 200 },
  {
    name: "mixed",
    // Stale for an on-demand refresh, not for the scheduler (6 h): a never-refreshed account
    // would be fetched by the always-on scheduler before the click, and the answer be a 200.
    accounts: [{ consentStatus: "EXPIRED" }, { lastTransactionRefreshDate: minutesAgo(2) }, { lastTransactionRefreshDate: minutesAgo(45) }],
    status: 201,
  },
  { name: "none", accounts: [], status: 200 },
];

for (const c of cases) {
  test(`the preview shows what the server then answers: ${c.name}`, async ({ page, request }) => {
    const staff = newStaff();
    const user = await seedUser(request, staff, c.accounts);
    await signIn(page, staff);
    await openUser(page, user);

    const rows = page.locator("tbody tr[data-account-id]");
    await expect(rows).toHaveCount(c.accounts.length);
    // What the wasm rules say, per account id, before anything is sent.
    const preview = new Map<string, string>();
    for (const row of await rows.all()) {
      preview.set((await row.getAttribute("data-account-id"))!, (await row.getByTestId(/^outcome-/).getAttribute("data-outcome"))!);
    }
    const previewStatus = c.accounts.length ? await page.getByTestId("preview-summary").getAttribute("data-status") : "SKIPPED";
    if (c.name === "mixed") await page.screenshot({ path: test.info().outputPath("user-preview.png"), fullPage: true });

    await page.getByTestId("refresh").click();
    const answer = page.getByTestId("refresh-answer");
    await expect(answer).toHaveAttribute("data-status", String(c.status));
    expect(previewStatus).toBe(c.status === 201 ? "TRIGGERED" : "SKIPPED");
    for (const row of await rows.all()) {
      const id = (await row.getAttribute("data-account-id"))!;
      await expect(row).toHaveAttribute("data-server-outcome", preview.get(id)!);
    }
    if (c.name === "none") await expect(answer).toHaveText("Nothing to refresh: no connected accounts.");
  });
}

test("the countdown reaches zero and the preview flips to TRIGGERED on time", async ({ page, request }) => {
  const staff = newStaff();
  // Refreshed 19 min 52 s ago: rate-limited for another 8 seconds.
  const user = await seedUser(request, staff, [{ lastTransactionRefreshDate: new Date(Date.now() - (20 * 60 - 8) * 1000).toISOString() }]);
  await signIn(page, staff);
  await openUser(page, user);
  const summary = page.getByTestId("preview-summary");
  await expect(summary).toHaveAttribute("data-status", "SKIPPED");
  const first = Number(await page.getByTestId("countdown").getAttribute("data-seconds"));
  expect(first).toBeGreaterThan(0);
  expect(first).toBeLessThanOrEqual(8);
  await expect(page.getByTestId("countdown")).not.toHaveAttribute("data-seconds", String(first), { timeout: 3_000 });
  await expect(summary).toHaveAttribute("data-status", "TRIGGERED", { timeout: 12_000 });
  await expect(page.getByTestId("outcome-0")).toHaveAttribute("data-outcome", "TRIGGERED");
  await page.getByTestId("refresh").click();
  await expect(page.getByTestId("refresh-answer")).toHaveAttribute("data-status", "201");
});
