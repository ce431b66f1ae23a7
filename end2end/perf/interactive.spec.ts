import { test, expect } from "@playwright/test";
import { minutesAgo, newStaff, seedUser, signIn } from "../tests/support";

// How soon a user page is interactive after navigation (its island hydrated), on the
// release build over localhost, and what the browser downloads for it. Run by scripts/bench
// (playwright.perf.config.ts); prints one JSON line.
test("a user page is interactive within 300 ms of navigation", async ({ browser, page, request }) => {
  const staff = newStaff();
  const user = await seedUser(request, staff, [
    { lastTransactionRefreshDate: minutesAgo(45) },
    { lastTransactionRefreshDate: minutesAgo(3) },
    { consentStatus: "EXPIRED" },
  ]);
  await signIn(page, staff);
  // A fresh context with the session but an empty HTTP cache: the first load fetches and
  // compiles the wasm.
  const state = await page.context().storageState();
  await page.context().close();
  page = await (await browser.newContext({ storageState: state })).newPage();
  // Records the moment the island flips data-hydrated to true, in page time.
  await page.addInitScript(() => {
    new MutationObserver((_, observer) => {
      if (document.querySelector("[data-testid=user-page][data-hydrated=true]")) {
        (window as any).__interactive = performance.now();
        observer.disconnect();
      }
    }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-hydrated"] });
  });
  const wasm: { bytes: number; encoding: string; cache: string }[] = [];
  page.on("response", async (r) => {
    if (r.url().endsWith(".wasm")) {
      const headers = r.headers();
      wasm.push({ bytes: Number(headers["content-length"] ?? 0), encoding: headers["content-encoding"] ?? "", cache: headers["cache-control"] ?? "" });
    }
  });
  const times: number[] = [];
  for (let i = 0; i < 11; i++) {
    await page.goto(`/users/${user}`);
    await expect(page.locator("[data-testid=user-page][data-hydrated=true]")).toBeVisible();
    times.push(await page.evaluate(() => (window as any).__interactive as number));
  }
  // The first load fetches and compiles the wasm; the others hit the browser's cache.
  expect(wasm[0].encoding).toBe("br");
  const warm = times.slice(1).sort((a, b) => a - b);
  const result = {
    coldMs: Math.round(times[0]),
    warmMedianMs: Math.round(warm[Math.floor(warm.length / 2)]),
    warmMaxMs: Math.round(warm[warm.length - 1]),
    wasmTransfer: wasm[0],
  };
  console.log(JSON.stringify(result));
  expect(result.coldMs).toBeLessThan(300);
});
