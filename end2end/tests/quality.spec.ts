import { test, expect } from "@playwright/test";
import { minutesAgo, newStaff, openUser, seedUser, signIn } from "./support";

test("on a phone the user page fits the screen and the refresh works from the keyboard", async ({ browser, request }) => {
  const staff = newStaff();
  const user = await seedUser(request, staff, [
    { lastTransactionRefreshDate: minutesAgo(45), providerName: "Monzo" },
    { consentStatus: "EXPIRED", providerName: "Barclays" },
  ]);
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const page = await context.newPage();
  await signIn(page, staff);
  await openUser(page, user);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow).toBeLessThanOrEqual(0);
  await page.screenshot({ path: test.info().outputPath("user-phone.png"), fullPage: true });

  // Keyboard only: focus the button, press Enter.
  await page.getByTestId("refresh").focus();
  await page.keyboard.press("Enter");
  await expect(page.getByTestId("refresh-answer")).toHaveText("Triggered 1 of 2 accounts.");
  await context.close();
});

test("every page has one h1, labelled controls, and times in the reader's locale", async ({ page, request }) => {
  const staff = newStaff();
  await seedUser(request, staff, [{ lastTransactionRefreshDate: minutesAgo(45) }]);
  await signIn(page, staff);
  for (const path of ["/", "/jobs", "/webhooks", "/keys", "/sandbox"]) {
    await page.goto(path);
    await expect(page.locator("h1")).toHaveCount(1);
    // Every form control has an accessible name.
    for (const control of await page.locator("main input:not([type=hidden]), main select").all()) {
      expect(await control.evaluate((el) => (el as HTMLInputElement).labels?.length || el.getAttribute("aria-label"))).toBeTruthy();
    }
  }
  await page.goto("/");
  const created = page.locator("[data-testid=users] time").first();
  // The server writes UTC; the page's script rewrites it in the browser's locale.
  await expect(created).not.toHaveText(/UTC$/);
  await expect(created).toHaveText(await created.evaluate((t) => new Date((t as HTMLTimeElement).dateTime).toLocaleString()));
});
