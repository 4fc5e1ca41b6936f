import { Browser, CDPSession } from "@playwright/test";
import fs from "node:fs";
import { ADMIN_EMAIL, serverCli } from "../global-setup";
import { expect, Locator, Page } from "@playwright/test";

export const PASSWORD = "correct horse battery staple";

export function uniqueEmail(prefix: string): string {
  return `${prefix}-${Date.now()}-${Math.floor(Math.random() * 1e6)}@e2e.test`;
}

/** Waits until the WASM bundle has hydrated the page, suspended parts that mark themselves included. */
export async function hydrated(page: Page) {
  await expect(page.locator('[data-hydrated="true"]')).toHaveCount(1);
  await expect(page.locator('[data-ready="false"]')).toHaveCount(0);
}

export async function signUp(page: Page, email: string) {
  // A page that fails to hydrate says why here.
  page.on("pageerror", (e) => console.log(`[page error] ${e.message}`));
  page.on("console", (m) => {
    // Refused requests (401/403/409 …) are what several tests provoke on purpose.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) console.log(`[console] ${m.text()}`);
  });
  await page.goto("/signup");
  await hydrated(page);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await page.getByLabel("Repeat password").fill(PASSWORD);
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page.getByRole("heading", { name: "Overview" })).toBeVisible();
}

export async function logIn(page: Page, email: string, password = PASSWORD) {
  await page.goto("/login");
  await hydrated(page);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

export async function signOut(page: Page) {
  await page.getByRole("button", { name: "Sign out" }).first().click();
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
}


/** A Chromium virtual authenticator (CTAP2, with PIN-style user verification) on `page`. */
export type VirtualKey = { cdp: CDPSession; authenticatorId: string };

export async function addVirtualKey(page: Page): Promise<VirtualKey> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("WebAuthn.enable");
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2",
      transport: "usb",
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
    },
  });
  return { cdp, authenticatorId };
}

/** Registers the page's virtual key on the Security page under `name`. */
export async function registerSecurityKey(page: Page, name: string) {
  await page.goto("/security");
  await hydrated(page);
  await page.getByLabel("Name for the new key").fill(name);
  await page.getByTestId("add-key").click();
  // The list reloads with the new key (the status line goes with the old list).
  await expect(page.getByTestId("security-keys")).toContainText(name);
}

/** Answers the step-up panel with the page's security key. */
export async function stepUpWithKey(page: Page) {
  const panel = page.getByTestId("step-up-panel");
  await panel.getByTestId("step-up-key").click();
  await expect(panel.getByTestId("step-up-status")).toContainText("Confirmed with your security key");
}

// The admin's one security key, carried between browser contexts the way a real key moves
// between computers: same private key, and its signature counter only ever goes up.
const ADMIN_KEY_FILE = "test-results/admin-key.json";

export async function adminWithKey(browser: Browser): Promise<{ page: Page; key: VirtualKey }> {
  const context = await browser.newContext();
  const page = await context.newPage();
  // A panic in the WASM bundle stops every handler; make it visible in the test output.
  page.on("pageerror", (e) => console.log(`[admin page error] ${e.message}`));
  page.on("console", (m) => m.type() === "error" && console.log(`[admin console] ${m.text()}`));
  await logIn(page, ADMIN_EMAIL, process.env.CRYPTOPULSE_ADMIN_PASSWORD!);
  await expect(page.getByRole("heading", { name: "Overview" })).toBeVisible();
  const key = await addVirtualKey(page);
  if (fs.existsSync(ADMIN_KEY_FILE)) {
    const credential = JSON.parse(fs.readFileSync(ADMIN_KEY_FILE, "utf8"));
    await key.cdp.send("WebAuthn.addCredential", { authenticatorId: key.authenticatorId, credential });
  } else {
    await registerSecurityKey(page, "Admin's security key");
  }
  return { page, key };
}

/** Remembers the admin key's state (its counter) for the next context. */
export async function saveAdminKey(key: VirtualKey) {
  const { credentials } = await key.cdp.send("WebAuthn.getCredentials", { authenticatorId: key.authenticatorId });
  fs.mkdirSync("test-results", { recursive: true });
  fs.writeFileSync(ADMIN_KEY_FILE, JSON.stringify(credentials[0]));
}

/** Clicks until `done` holds: for clicks that are safe to repeat and can land before a handler. */
export async function clickUntil(button: Locator, done: () => Promise<void>) {
  await expect(async () => {
    await button.click();
    await done();
  }).toPass({ timeout: 20_000, intervals: [500, 1_000, 2_000] });
}

/** Signs up a new account and makes it a compliance reviewer through the server's CLI. */
export async function signUpReviewer(page: Page, email: string) {
  await signUp(page, email);
  serverCli(["set-role", "--email", email, "--role", "reviewer"]);
}
