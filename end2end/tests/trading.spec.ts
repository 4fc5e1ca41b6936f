import { Page } from "@playwright/test";
import { expect, test } from "./fixtures";
import { BINANCE_KEY, BINANCE_SECRET } from "../binance-stand-in";
import { addVirtualKey, adminWithKey, hydrated, registerSecurityKey, saveAdminKey, signUp, stepUpWithKey, uniqueEmail } from "./helpers";

/** Places a market order on the ticket and waits for its result; returns the result's status. */
async function placeOrder(page: Page, symbol: string, side: "buy" | "sell", quantity: string): Promise<string> {
  const ticket = page.getByTestId("order-ticket");
  await ticket.getByLabel("Symbol").selectOption(symbol);
  await ticket.getByText(side === "buy" ? "Buy" : "Sell", { exact: true }).click();
  await ticket.getByLabel("Quantity").fill(quantity);
  await expect(ticket.getByTestId("notional")).not.toHaveText("—");
  const before = await page.getByTestId("order-row").count();
  await ticket.getByTestId("place-order").click();
  const result = page.getByTestId("order-result");
  await expect(result).toBeVisible();
  // The recent-orders table reloads with the new order.
  await expect(page.getByTestId("order-row")).toHaveCount(Math.min(before + 1, 8));
  return (await result.getAttribute("data-status")) ?? "";
}

test("a small order goes straight through and shows in positions and orders", async ({ page }) => {
  await signUp(page, uniqueEmail("trade-small"));
  await page.getByRole("link", { name: "Trade", exact: true }).click();
  await hydrated(page);
  const ticket = page.getByTestId("order-ticket");
  await ticket.getByLabel("Symbol").selectOption("BTCUSDT");
  await ticket.getByLabel("Quantity").fill("0.002");
  // The browser previews the server's own rules.
  await expect(ticket.getByTestId("checks")).toContainText("Within your limits");
  await page.screenshot({ path: "test-results/screens/trade-ticket.png", fullPage: true });
  expect(await placeOrder(page, "BTCUSDT", "buy", "0.002")).toBe("filled");
  await expect(page.getByTestId("order-result")).toContainText("Filled: buy 0.002 BTCUSDT");
  await expect(page.getByTestId("positions")).toContainText("BTCUSDT");
  // The ticket is ready for the next order.
  await expect(ticket.getByLabel("Quantity")).toHaveValue("");
  await expect(ticket.getByTestId("notional")).toHaveText("—");
  await page.screenshot({ path: "test-results/screens/trade-filled.png", fullPage: true });

  await page.getByRole("link", { name: "Orders", exact: true }).click();
  await hydrated(page);
  await expect(page.getByTestId("orders").getByTestId("order-row")).toHaveCount(1);
  await expect(page.getByTestId("fills")).toContainText("BTCUSDT");
});

test("a sell limit far below the market is refused on the ticket and by the server", async ({ page }) => {
  await signUp(page, uniqueEmail("trade-through"));
  await page.getByRole("link", { name: "Trade", exact: true }).click();
  await hydrated(page);
  expect(await placeOrder(page, "BTCUSDT", "buy", "0.002")).toBe("filled");
  const ticket = page.getByTestId("order-ticket");
  await ticket.getByText("Sell", { exact: true }).click();
  await ticket.getByLabel("Type").selectOption("limit");
  await ticket.getByLabel("Limit price (USDT)").fill("0.00000001");
  await ticket.getByLabel("Quantity").fill("0.002");
  // It would fill at once at the market price, so it is not valued at its tiny limit.
  await expect(ticket.locator('[data-rule="price"]')).toContainText("would trade at once at the market price");
  await expect(ticket.getByTestId("notional")).toHaveText("—");
  await page.screenshot({ path: "test-results/screens/trade-limit-through-market.png", fullPage: true });
  await ticket.getByTestId("place-order").click();
  await expect(ticket.getByRole("alert")).toContainText("it would sell at once at the market price");
  await page.getByRole("link", { name: "Orders", exact: true }).click();
  await hydrated(page);
  await expect(page.getByTestId("orders").getByTestId("order-row")).toHaveCount(1);
});

test("a trader trades on a Binance testnet key at Binance's prices", async ({ page }) => {
  await signUp(page, uniqueEmail("trade-binance"));
  await page.goto("/keys");
  await hydrated(page);
  const form = page.getByTestId("add-key-form");
  await form.getByLabel("Exchange").selectOption("binance");
  await form.getByLabel("Environment").selectOption("testnet");
  await form.getByLabel("Label").fill("Testnet bot");
  await form.getByLabel("API key").fill(BINANCE_KEY);
  await form.getByLabel("API secret").fill(BINANCE_SECRET);
  await form.getByRole("button", { name: "Check and save key" }).click();
  await expect(page.getByTestId("key-saved")).toContainText("Testnet bot");

  await page.goto("/trade");
  await hydrated(page);
  const ticket = page.getByTestId("order-ticket");
  const paperPrice = await ticket.getByTestId("quote").textContent();
  const account = await ticket.locator("#venue option", { hasText: "Testnet bot" }).getAttribute("value");
  await ticket.getByLabel("Account").selectOption(account ?? "missing");
  // The ticket now quotes Binance (the stand-in's fixed price), not the paper feed.
  await expect(ticket.getByTestId("quote")).toHaveText("65,000 USDT");
  expect(paperPrice).not.toBe("65,000 USDT");
  await ticket.getByLabel("Quantity").fill("0.01");
  await expect(ticket.getByTestId("notional")).toHaveText("650 USDT");
  await expect(ticket.getByTestId("checks")).toContainText("Within your limits");
  await ticket.getByTestId("place-order").click();
  await expect(page.getByTestId("order-result")).toHaveAttribute("data-status", "filled");
  await expect(page.getByTestId("order-result")).toContainText("Filled: buy 0.01 BTCUSDT at 65000 USDT");
  const row = page.getByTestId("order-row").first();
  await expect(row).toContainText("Binance");
  // Binance's fill is Binance's balance: the paper account is untouched.
  await expect(page.getByTestId("positions")).toContainText("No positions yet.");
  // The reloaded ticket still quotes the account that stays chosen.
  await expect(ticket.getByTestId("quote")).toHaveText("65,000 USDT");
  await page.screenshot({ path: "test-results/screens/trade-binance.png", fullPage: true });
});

test("a large order asks for the security key, approved for exactly that order", async ({ page }) => {
  await signUp(page, uniqueEmail("trade-large"));
  await addVirtualKey(page);
  await registerSecurityKey(page, "Trading key");
  await page.goto("/trade");
  await hydrated(page);
  const ticket = page.getByTestId("order-ticket");
  await ticket.getByLabel("Symbol").selectOption("BTCUSDT");
  await ticket.getByLabel("Quantity").fill("0.25");
  await expect(ticket.getByTestId("checks")).toContainText("Needs your security key");
  await ticket.getByTestId("place-order").click();
  const approval = page.getByTestId("order-approval");
  await expect(approval).toContainText("Approve this order");
  await page.screenshot({ path: "test-results/screens/trade-approval.png", fullPage: true });
  await approval.getByTestId("approve-with-key").click();
  const result = page.getByTestId("order-result");
  await expect(result).toHaveAttribute("data-status", "filled");
  await expect(result).toContainText("Filled: buy 0.25 BTCUSDT");
  await expect(page.getByTestId("order-approval")).toHaveCount(0);
});

test("a burst of odd orders quarantines the trader, shows the banner, and a reviewer sees the case", async ({ page, browser }) => {
  const email = uniqueEmail("trade-burst");
  await signUp(page, email);
  await page.goto("/trade");
  await hydrated(page);
  for (let i = 0; i < 6; i++) {
    expect(await placeOrder(page, "BTCUSDT", "buy", "0.001")).toBe("filled");
  }
  await expect(page.getByTestId("trading-banner")).toHaveCount(0);
  // Far larger than usual, in a symbol never traded, in the middle of a burst.
  expect(await placeOrder(page, "ETHUSDT", "buy", "2.5")).toBe("held");
  await page.reload();
  await hydrated(page);
  await expect(page.getByTestId("trading-banner").first()).toContainText("quarantined");
  await page.screenshot({ path: "test-results/screens/trade-quarantined.png", fullPage: true });
  // New buys are refused now, and the banner follows the trader to every page.
  expect(await placeOrder(page, "BTCUSDT", "buy", "0.001")).toBe("denied");
  await page.getByRole("link", { name: "Orders", exact: true }).click();
  await expect(page.getByTestId("trading-banner").first()).toContainText("quarantined");

  // A reviewer (the admin) sees the case with its evidence.
  const { page: admin, key } = await adminWithKey(browser);
  await admin.goto("/review");
  await hydrated(admin);
  await admin.getByTestId("case-list").getByText(email).first().click();
  const detail = admin.getByTestId("case-detail");
  await expect(detail).toContainText(email);
  await expect(detail.locator("svg").first()).toBeVisible();
  await expect(detail.getByTestId("case-outcomes")).toContainText("the trader returns to active trading");
  await admin.screenshot({ path: "test-results/screens/review-case.png", fullPage: true });
  await admin.getByTestId("case-note").fill("Checked with the trader: a planned ETH purchase.");
  await admin.getByTestId("case-release").click();
  // Releasing someone is a lasting change: a fresh step-up with the reviewer's key first.
  await stepUpWithKey(admin);
  await admin.getByTestId("case-release").click();
  await expect(detail).toContainText("released");
  await saveAdminKey(key);
  await admin.context().close();

  await page.reload();
  await hydrated(page);
  await expect(page.getByTestId("trading-banner")).toHaveCount(0);
  // Released, the held order is judged again and sent by the background job within seconds.
  await page.getByRole("link", { name: "Orders", exact: true }).click();
  await hydrated(page);
  const released = page.getByTestId("order-row").filter({ hasText: /2\.5 ETHUSDT/ });
  await expect(async () => {
    await page.reload();
    await expect(released).toHaveAttribute("data-status", "filled", { timeout: 1_000 });
  }).toPass({ timeout: 20_000 });
  await page.screenshot({ path: "test-results/screens/orders-released.png", fullPage: true });
});

test("the admin's kill switch needs the security key and puts a banner on every trader's page", async ({ page, browser }) => {
  await signUp(page, uniqueEmail("trade-kill"));
  const { page: admin, key } = await adminWithKey(browser);
  await admin.goto("/admin/risk");
  await hydrated(admin);
  const card = admin.getByTestId("kill-switch");
  await expect(card).toContainText("Trading is on for everyone");
  await card.getByRole("button", { name: "Turn the kill switch on…" }).click();
  await card.getByTestId("kill-switch-on").click();
  // Admin actions need a fresh security-key step-up first.
  await stepUpWithKey(admin);
  await card.getByRole("button", { name: "Turn the kill switch on…" }).click();
  await card.getByTestId("kill-switch-on").click();
  await expect(card).toContainText("KILL SWITCH ON");
  await admin.screenshot({ path: "test-results/screens/risk-kill-switch.png", fullPage: true });

  await page.goto("/trade");
  await hydrated(page);
  await expect(page.getByTestId("trading-banner").first()).toContainText("Kill switch on");
  const ticket = page.getByTestId("order-ticket");
  await ticket.getByLabel("Quantity").fill("0.001");
  await expect(ticket.getByTestId("checks")).toContainText("kill switch");
  expect(await placeOrder(page, "BTCUSDT", "buy", "0.001")).toBe("denied");
  await page.screenshot({ path: "test-results/screens/trade-kill-switch.png", fullPage: true });

  await card.getByRole("button", { name: "Turn the kill switch off…" }).click();
  await card.getByTestId("kill-switch-off").click();
  await expect(card).toContainText("Trading is on for everyone");
  await saveAdminKey(key);
  await admin.context().close();
});

test("an approval for a large paper order is refused for the same terms on another account", async ({ page }) => {
  await signUp(page, uniqueEmail("trade-bound"));
  await addVirtualKey(page);
  await registerSecurityKey(page, "Trading key");
  // A Binance testnet key: another account the same terms could be sent to.
  await page.goto("/keys");
  await hydrated(page);
  const form = page.getByTestId("add-key-form");
  await form.getByLabel("Exchange").selectOption("binance");
  await form.getByLabel("Environment").selectOption("testnet");
  await form.getByLabel("Label").fill("Testnet bot");
  await form.getByLabel("API key").fill(BINANCE_KEY);
  await form.getByLabel("API secret").fill(BINANCE_SECRET);
  await form.getByRole("button", { name: "Check and save key" }).click();
  await expect(page.getByTestId("key-saved")).toContainText("Testnet bot");

  await page.goto("/trade");
  await hydrated(page);
  const ticket = page.getByTestId("order-ticket");
  const binanceAccount = await ticket.locator("#venue option", { hasText: "Testnet bot" }).getAttribute("value");
  expect(binanceAccount).toBeTruthy();
  // On the paper account: a limit buy of 0.25 BTC at the paper quote (over 10,000 USDT) needs
  // the key.
  await ticket.getByLabel("Symbol").selectOption("BTCUSDT");
  await expect(ticket.getByTestId("quote")).not.toHaveText("—");
  const limit = ((await ticket.getByTestId("quote").textContent()) ?? "").replace(/[^0-9.]/g, "");
  await ticket.getByLabel("Type").selectOption("limit");
  await ticket.getByLabel("Limit price (USDT)").fill(limit);
  await ticket.getByLabel("Quantity").fill("0.25");
  await expect(ticket.getByTestId("checks")).toContainText("Needs your security key");

  // When the approved order is sent, the same form (terms and approval nonce) is first sent
  // with the Binance account instead: the approval does not cover it.
  let replay: { status: number; body: string } | undefined;
  await page.route("**/api/trading/place", async (route) => {
    const sent = new URLSearchParams(route.request().postData() ?? "");
    if (sent.get("approval_nonce") && !replay) {
      sent.set("venue", binanceAccount ?? "missing");
      const response = await page.request.post("/api/trading/place", {
        headers: {
          origin: new URL(page.url()).origin,
          "content-type": "application/x-www-form-urlencoded",
        },
        data: sent.toString(),
      });
      replay = { status: response.status(), body: await response.text() };
    }
    await route.continue();
  });
  await ticket.getByTestId("place-order").click();
  const approval = page.getByTestId("order-approval");
  await expect(approval).toContainText("Approve this order");
  await approval.getByTestId("approve-with-key").click();
  const result = page.getByTestId("order-result");
  await expect(result).toHaveAttribute("data-status", /filled|open/);
  expect(replay?.status).toBe(400);
  expect(replay?.body).toContain("does not match");

  // One order, on the paper exchange; nothing went to Binance.
  await page.getByRole("link", { name: "Orders", exact: true }).click();
  await hydrated(page);
  const rows = page.getByTestId("orders").getByTestId("order-row");
  await expect(rows).toHaveCount(1);
  await expect(rows.first()).toContainText("Paper exchange");
  await expect(rows.first()).not.toContainText("Binance");
});
