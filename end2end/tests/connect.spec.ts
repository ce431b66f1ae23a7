// The portal's side of the connection journey: the Banks page, and a connection link made for
// a user from their page (shown once), which opens the journey's page with the partner's name.
import { test, expect } from "@playwright/test";
import { newStaff, openUser, seedUser, signIn } from "./support";

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
