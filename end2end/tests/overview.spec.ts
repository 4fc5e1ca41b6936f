// The overview at `/` fits the role: a trader's trading state, positions, open orders, alerts
// and keys due; a reviewer's open cases by age and report downloads; an admin's kill switch,
// open alerts and the security-events chart. Screenshots go to test-results/screens/.
import { ADMIN_EMAIL } from "../global-setup";
import { expect, test } from "./fixtures";
import { hydrated, logIn, signUp, signUpReviewer, uniqueEmail } from "./helpers";

test("a trader's overview shows the trading state, a position, an open order and the key card", async ({ page }) => {
  await signUp(page, uniqueEmail("overview-trader"));
  // A filled market order and a resting limit order, placed the way the ticket does (same origin).
  const placed = await page.evaluate(async () => {
    const post = async (endpoint: string, form: Record<string, string>) => {
      const r = await fetch(`/api/${endpoint}`, {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams(form),
      });
      return r.json();
    };
    const ticket = await post("trading/ticket", {});
    const price = Number(ticket.prices.find((p: { symbol: string }) => p.symbol === "BTCUSDT").price);
    const order = { venue: "paper", symbol: "BTCUSDT", side: "buy", quantity: "0.001" };
    const filled = await post("trading/place", { ...order, order_type: "market", price: String(price) });
    const resting = await post("trading/place", { ...order, order_type: "limit", price: String(Math.floor(price / 2)) });
    return [filled.status, resting.status];
  });
  expect(placed).toEqual(["filled", "open"]);

  await page.goto("/");
  await hydrated(page);
  await expect(page.getByTestId("trading-state")).toHaveText("ACTIVE");
  await expect(page.getByTestId("card-positions")).toContainText("BTCUSDT");
  await expect(page.getByTestId("open-order")).toHaveCount(1);
  await expect(page.getByTestId("card-alerts")).toContainText("No open alerts");
  await expect(page.getByTestId("card-keys-due")).toContainText("Keys are to be replaced every 90 days");
  // The reviewer's and admin's cards are not a trader's.
  await expect(page.getByTestId("reviewer-overview")).toHaveCount(0);
  await expect(page.getByTestId("admin-overview")).toHaveCount(0);
  await expect(page.getByTestId("quick-links")).toBeVisible();
  await page.screenshot({ path: "test-results/screens/overview-trader.png", fullPage: true });
});

test("a reviewer's overview shows open cases by age and recent report downloads", async ({ page }) => {
  await signUpReviewer(page, uniqueEmail("overview-reviewer"));
  await page.goto("/");
  await hydrated(page);
  const cases = page.getByTestId("card-open-cases");
  await expect(cases).toBeVisible();
  await expect(cases.getByTestId("case-bucket")).toHaveCount(3);
  await expect(cases).toContainText("Under 1 hour");
  await expect(cases).toContainText("Over 24 hours");
  await expect(page.getByTestId("card-report-downloads")).toBeVisible();
  await expect(page.getByTestId("trader-overview")).toHaveCount(0);
  await expect(page.getByTestId("admin-overview")).toHaveCount(0);
  await page.screenshot({ path: "test-results/screens/overview-reviewer.png", fullPage: true });
});

test("an admin's overview shows the kill switch, open alerts and the security-events chart", async ({ browser }) => {
  // Failed sign-ins first: security events for the chart's current hour.
  const stranger = await browser.newPage();
  for (let i = 0; i < 3; i++) {
    await logIn(stranger, `nobody-${i}@e2e.test`, "not the password");
    await expect(stranger.getByRole("alert")).toBeVisible();
  }
  await stranger.context().close();

  const context = await browser.newContext();
  const page = await context.newPage();
  await logIn(page, ADMIN_EMAIL, process.env.CRYPTOPULSE_ADMIN_PASSWORD!);
  await expect(page.getByRole("heading", { name: "Overview" })).toBeVisible();
  await hydrated(page);
  await expect(page.getByTestId("kill-switch-state")).toHaveText(/^(ON|OFF)$/);
  await expect(page.getByTestId("open-alert-count")).toBeVisible();
  const chart = page.getByTestId("security-chart").locator("svg");
  await expect(chart).toBeVisible();
  await expect(chart.locator("title#security-chart-title")).toHaveText(/Security events per hour/);
  await expect(chart.locator("g[data-hour]")).toHaveCount(24);
  // The three failures above are in the last bar, or in the last two when an hour began
  // between them and this page.
  const bars = chart.locator("g[data-hour]");
  const refusedIn = async (index: number) => Number(await bars.nth(index).getAttribute("data-refused"));
  expect((await refusedIn(22)) + (await refusedIn(23))).toBeGreaterThanOrEqual(3);
  // Admins review too: the reviewer's cards follow.
  await expect(page.getByTestId("reviewer-overview")).toBeVisible();
  await page.screenshot({ path: "test-results/screens/overview-admin.png", fullPage: true });
  await context.close();
});

test("the control map is public and lists each framework", async ({ page }) => {
  await page.goto("/controls");
  await hydrated(page);
  await expect(page.getByRole("heading", { name: "Control map" })).toBeVisible();
  await expect(page.getByTestId("control-framework")).toHaveCount(3);
  await expect(page.getByTestId("control-map")).toContainText("Art. 12");
  await expect(page.getByTestId("control-map")).toContainText("risk.kill_switch_on");
  await page.screenshot({ path: "test-results/screens/controls.png", fullPage: true });
});
