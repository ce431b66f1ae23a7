import { expect, type Locator, type Page } from "@playwright/test";

/** The portal's preview page: a user's accounts and the live refresh preview. */
export class PreviewPage {
  readonly summary: Locator;
  readonly text: Locator;
  readonly countdown: Locator;

  constructor(readonly page: Page) {
    this.summary = page.getByTestId("preview-summary");
    this.text = page.getByTestId("preview-text");
    this.countdown = page.getByTestId("countdown");
  }

  /** Opens the page and waits until the wasm has hydrated it (a click before that is lost). */
  async open() {
    await this.page.goto("/");
    await expect(this.page.locator("[data-testid=user-preview][data-hydrated=true]")).toBeVisible();
  }

  outcome(row: number): Locator {
    return this.page.getByTestId(`outcome-${row}`);
  }

  async setMinutesAgo(row: number, minutes: number | "") {
    await this.page.getByTestId(`minutes-ago-${row}`).fill(String(minutes));
  }

  async setConsent(row: number, status: "ACTIVE" | "EXPIRED") {
    await this.page.getByTestId(`consent-${row}`).selectOption(status);
  }

  async setInFlight(row: number, on: boolean) {
    await this.page.getByTestId(`in-flight-${row}`).setChecked(on);
  }
}
