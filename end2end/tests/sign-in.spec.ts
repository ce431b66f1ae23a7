import { test, expect } from "@playwright/test";
import { newStaff, seedUser, signIn } from "./support";

test("a portal user signs in, sees the users, and signs out", async ({ page }) => {
  const staff = newStaff();
  await page.goto("/");
  await expect(page).toHaveURL(/\/sign-in\?next=%2F$/);
  await signIn(page, staff);
  await expect(page.getByRole("heading", { name: "Users" })).toBeVisible();
  await page.screenshot({ path: test.info().outputPath("users.png"), fullPage: true });

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page.getByTestId("signed-out")).toBeVisible();
  await page.goto("/");
  await expect(page).toHaveURL(/\/sign-in/);
});

test("a wrong password gets a clear message and no session", async ({ page }) => {
  const staff = newStaff();
  await page.goto("/sign-in");
  await page.screenshot({ path: test.info().outputPath("sign-in.png") });
  await page.getByLabel("Email").fill(staff.email);
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByTestId("sign-in-error")).toHaveText("That email and password do not match. Check both and try again.");
  await expect(page.getByLabel("Email")).toHaveValue(staff.email);
  await page.goto("/");
  await expect(page).toHaveURL(/\/sign-in/);
});

test("another partner's user is not reachable", async ({ page, request }) => {
  const mine = newStaff("Mine");
  const theirs = newStaff("Theirs");
  const theirUser = await seedUser(request, theirs, [{ consentStatus: "ACTIVE" }]);
  await signIn(page, mine);
  await page.goto(`/users/${theirUser}`);
  await expect(page.getByTestId("not-found")).toBeVisible();
  await expect(page.getByTestId("user-id")).toHaveCount(0);
  await page.goto(`/?q=${theirUser}`);
  await expect(page.getByTestId("no-users")).toBeVisible();
});
