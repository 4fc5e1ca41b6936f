import { expect, test } from "./fixtures";
import { addVirtualKey, adminWithKey, clickUntil, hydrated, registerSecurityKey, saveAdminKey, signUp, stepUpWithKey, uniqueEmail } from "./helpers";

test("a trader registers a security key, and removing it asks for the key first", async ({ page }) => {
  await signUp(page, uniqueEmail("keys"));
  await page.getByRole("link", { name: "Security" }).click();
  await expect(page.getByRole("heading", { name: "Security", exact: true })).toBeVisible();
  await hydrated(page);
  await expect(page.getByTestId("privilege-window")).toContainText("read-only for sensitive actions");
  await expect(page.getByTestId("no-keys")).toBeVisible();

  await addVirtualKey(page);
  await registerSecurityKey(page, "Laptop passkey");
  await expect(page.getByTestId("security-keys")).toContainText("Laptop passkey");
  await expect(page.getByTestId("security-keys")).toContainText("never used");
  await page.screenshot({ path: "test-results/screens/security-key-added.png", fullPage: true });

  // Removing a factor is sensitive: the first try asks for a step-up, then it goes through.
  const row = page.getByTestId("security-keys").locator("li").filter({ hasText: "Laptop passkey" });
  await row.getByRole("button", { name: "Remove…" }).click();
  await row.getByRole("button", { name: "Remove", exact: true }).click();
  await expect(row.getByTestId("step-up-panel")).toContainText("Confirm it's you first");
  await page.screenshot({ path: "test-results/screens/security-step-up.png", fullPage: true });
  await stepUpWithKey(page);
  await row.getByRole("button", { name: "Remove", exact: true }).click();
  await expect(page.getByTestId("no-keys")).toBeVisible();
  await expect(page.getByTestId("privilege-window")).toContainText("Confirmed with your security key");
});

test("a trader sets up an authenticator app and gets recovery codes once", async ({ page }) => {
  await signUp(page, uniqueEmail("totp"));
  await page.goto("/security");
  await hydrated(page);
  await page.getByTestId("totp-start").click();
  const setup = page.getByTestId("totp-setup");
  await expect(setup.locator("svg")).toBeVisible();
  const secret = (await setup.getByTestId("totp-secret").textContent())!.trim();
  expect(secret).toMatch(/^[A-Z2-7]{32}$/);
  await page.screenshot({ path: "test-results/screens/security-totp-setup.png", fullPage: true });

  await page.getByLabel("2. Enter the code the app shows").fill("000000");
  await page.getByTestId("totp-confirm").click();
  // Most likely wrong; if 000000 happens to be right, the codes appear instead.
  await page.getByLabel("2. Enter the code the app shows").fill(totp(secret));
  await page.getByTestId("totp-confirm").click();
  const codes = page.getByTestId("recovery-codes");
  await expect(codes.locator("li")).toHaveCount(10);
  await page.screenshot({ path: "test-results/screens/security-recovery-codes.png", fullPage: true });
  await codes.getByRole("button", { name: "I have saved them" }).click();
  await expect(page.getByText("10 recovery codes left")).toBeVisible();
  // The codes are not shown again.
  await page.reload();
  await hydrated(page);
  await expect(page.getByTestId("recovery-codes")).toHaveCount(0);
});

test("an admin action is refused until the admin steps up with a security key", async ({ browser }) => {
  const { page: admin, key } = await adminWithKey(browser);
  await admin.goto("/admin/vault");
  await hydrated(admin);
  const before = (await admin.getByTestId("current-kms-key").textContent())!;
  const panel = admin.getByTestId("step-up-panel");
  // Refused without a step-up, so the click is safe to repeat.
  await clickUntil(admin.getByTestId("rotate-master-key"), () =>
    expect(panel).toContainText("Admin actions need your security key", { timeout: 2_000 }),
  );
  // No code box for admin actions: an authenticator app is not enough.
  await expect(panel.getByRole("textbox")).toHaveCount(0);
  await expect(admin.getByTestId("current-kms-key")).toHaveText(before);
  await admin.screenshot({ path: "test-results/screens/admin-step-up.png", fullPage: true });
  await stepUpWithKey(admin);
  await saveAdminKey(key);
  await admin.getByTestId("rotate-master-key").click();
  await expect(admin.getByTestId("current-kms-key")).not.toHaveText(before);
  await admin.goto("/security");
  await hydrated(admin);
  await expect(admin.getByTestId("privilege-window")).toContainText("Confirmed with your security key");
  await admin.screenshot({ path: "test-results/screens/admin-security.png", fullPage: true });
});

/** RFC 6238 TOTP (SHA-1, 6 digits, 30 s) with node's crypto, for the app a person would use. */
function totp(base32: string): string {
  const crypto = require("node:crypto");
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of base32.replace(/=+$/, "")) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g)!.map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 1000 / 30)));
  const mac: Buffer = crypto.createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return value.toString().padStart(6, "0");
}
