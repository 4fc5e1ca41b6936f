import { Page } from "@playwright/test";
import { expect, test } from "./fixtures";
import { adminWithKey, clickUntil, hydrated, saveAdminKey, signUp, stepUpWithKey, uniqueEmail } from "./helpers";

// scripts/test.sh sets this and then searches the server log for it.
const SECRET = process.env.E2E_KEY_SECRET ?? "e2e-secret-not-set-0123456789abcdef";
const API_KEY = `pk-e2e-${Date.now().toString(16)}-7c3a`;

async function addPaperKey(page: Page, label: string) {
  const form = page.getByTestId("add-key-form");
  await form.getByLabel("Label").fill(label);
  await form.getByLabel("API key").fill(API_KEY);
  await form.getByLabel("API secret").fill(SECRET);
  await form.getByRole("button", { name: "Check and save key" }).click();
  await expect(page.getByTestId("key-saved")).toContainText(label);
}

test("a trader adds a key, sees only its mask, re-wraps it after a rotation, and revokes it", async ({ page, browser }) => {
  const trader = uniqueEmail("vault");
  await signUp(page, trader);
  await page.getByRole("link", { name: "Keys", exact: true }).click();
  await expect(page.getByRole("heading", { name: "Exchange keys" })).toBeVisible();
  await hydrated(page);
  await expect(page.getByTestId("no-keys")).toBeVisible();

  // The secret fields are password inputs with autocomplete off.
  const secretInput = page.getByLabel("API secret");
  await expect(secretInput).toHaveAttribute("type", "password");
  await expect(secretInput).toHaveAttribute("autocomplete", "off");

  await addPaperKey(page, "Main paper");
  // The form is cleared and the list shows the mask, never the key or secret.
  await expect(page.getByLabel("API key")).toHaveValue("");
  await expect(secretInput).toHaveValue("");
  const row = page.getByTestId("key-row").filter({ hasText: "Main paper" });
  await expect(row.getByTestId("key-mask")).toHaveText("****7c3a");
  await expect(row).toHaveAttribute("data-status", "active");
  const html = await page.content();
  expect(html).not.toContain(SECRET);
  expect(html).not.toContain(API_KEY);
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
  expect(stored).not.toContain(SECRET);
  await page.screenshot({ path: "test-results/screens/keys-added.png", fullPage: true });

  // A permission check decrypts the key once and leaves a receipt.
  await row.getByTestId("check-key").click();
  await expect(row.getByTestId("last-used")).toContainText("used ");
  await expect(page.getByTestId("receipt").filter({ hasText: "Decrypted for permission check" })).toHaveCount(1);

  // An admin adds a master key version; the trader's key is now due a re-wrap.
  const { page: admin, key: adminKey } = await adminWithKey(browser);
  await admin.goto("/admin/vault");
  await hydrated(admin);
  const before = (await admin.getByTestId("current-kms-key").textContent())!;
  // Rotating is an admin action: the first try asks for the security key.
  await clickUntil(admin.getByTestId("rotate-master-key"), () =>
    expect(admin.getByTestId("step-up-panel")).toBeVisible({ timeout: 2_000 }),
  );
  await stepUpWithKey(admin);
  await saveAdminKey(adminKey);
  await expect(admin.getByTestId("current-kms-key")).toHaveText(before);
  await admin.getByTestId("rotate-master-key").click();
  await expect(admin.getByTestId("current-kms-key")).not.toHaveText(before);
  const current = (await admin.getByTestId("current-kms-key").textContent())!;
  await admin.screenshot({ path: "test-results/screens/vault-admin-rotated.png", fullPage: true });

  await page.reload();
  await hydrated(page);
  await expect(row.getByTestId("sealed-under")).toHaveText(before);
  await expect(row).toContainText("re-wrap due");
  await page.getByTestId("rewrap").click();
  await expect(page.getByTestId("rewrap-progress")).toHaveAttribute("data-finished", "true");
  await expect(page.getByTestId("rewrap-summary")).toContainText("1 re-wrapped");
  // Checked after a reload: what is stored, not only what the page refreshed to.
  await page.reload();
  await hydrated(page);
  await expect(row.getByTestId("sealed-under")).toHaveText(current);
  await expect(page.getByTestId("receipt").filter({ hasText: "re-wrapped" })).toHaveCount(1);
  await page.screenshot({ path: "test-results/screens/keys-rewrapped.png", fullPage: true });

  // Revoking asks once more, then deletes the ciphertext.
  await row.getByTestId("revoke-key").click();
  await row.getByTestId("confirm-revoke").click();
  await expect(row).toHaveAttribute("data-status", "revoked");
  await expect(row).toContainText("ciphertext deleted");
  await expect(page.getByTestId("receipt").filter({ hasText: "Revoked" })).toHaveCount(1);
  await expect(page.getByTestId("use-chart")).toBeVisible();
  await page.screenshot({ path: "test-results/screens/keys-revoked.png", fullPage: true });
});

test("a decoy key planted by an admin raises an alert when it is used", async ({ page, browser }) => {
  const trader = uniqueEmail("decoy");
  // Unique, so the admin's alert list (shared by every run against this server) has one match.
  const label = `Old bot key ${trader.split("@")[0].slice("decoy-".length)}`;
  await signUp(page, trader);

  const { page: admin, key: adminKey } = await adminWithKey(browser);
  await admin.goto("/admin/vault");
  await hydrated(admin);
  const plant = admin.getByTestId("plant-canary-form");
  await plant.getByLabel("Place in the vault of (email)").fill(trader);
  await plant.getByLabel("Label it shows").fill(label);
  await clickUntil(plant.getByRole("button", { name: "Plant decoy" }), () =>
    expect(admin.getByTestId("step-up-panel")).toBeVisible({ timeout: 2_000 }),
  );
  await stepUpWithKey(admin);
  await saveAdminKey(adminKey);
  await plant.getByRole("button", { name: "Plant decoy" }).click();
  await expect(admin.getByTestId("canary-row").filter({ hasText: trader })).toHaveCount(1);

  await page.goto("/keys");
  await hydrated(page);
  const decoy = page.getByTestId("key-row").filter({ hasText: label });
  await expect(decoy).toHaveAttribute("data-status", "active");
  await decoy.getByTestId("check-key").click();
  await expect(page.getByRole("alert")).toContainText("cannot be used");

  await admin.reload();
  await hydrated(admin);
  const alert = admin.getByTestId("alert").filter({ hasText: label });
  await expect(alert).toHaveAttribute("data-open", "true");
  await admin.screenshot({ path: "test-results/screens/vault-admin-alert.png", fullPage: true });
  // Acknowledging twice is harmless, so repeat a click that landed before its handler.
  await clickUntil(alert.getByTestId("acknowledge-alert"), () =>
    expect(alert).toHaveAttribute("data-open", "false", { timeout: 2_000 }),
  );
});
