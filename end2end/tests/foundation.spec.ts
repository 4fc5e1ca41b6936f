import { expect, test } from "./fixtures";
import { ADMIN_EMAIL, serverCli } from "../global-setup";
import { PASSWORD, adminWithKey, clickUntil, hydrated, logIn, saveAdminKey, signOut, signUp, stepUpWithKey, uniqueEmail } from "./helpers";

test("pages carry the security headers and still hydrate under the CSP", async ({ page }) => {
  const cspViolations: string[] = [];
  page.on("console", (msg) => {
    if (/Content Security Policy/i.test(msg.text())) cspViolations.push(msg.text());
  });
  const response = await page.goto("/");
  expect(response).not.toBeNull();
  const headers = response!.headers();
  expect(headers["content-security-policy"]).toContain("frame-ancestors 'none'");
  expect(headers["content-security-policy"]).toMatch(/script-src 'self' 'nonce-[A-Za-z0-9_-]+'/);
  expect(headers["x-content-type-options"]).toBe("nosniff");
  expect(headers["x-frame-options"]).toBe("DENY");
  expect(headers["referrer-policy"]).toBe("same-origin");
  expect(headers["x-request-id"]).toBeTruthy();
  await hydrated(page);
  expect(cspViolations).toEqual([]);
  await page.screenshot({ path: "test-results/screens/home.png", fullPage: true });
});

test("sign up, sign out and sign in again", async ({ page }) => {
  const email = uniqueEmail("trader");
  await page.goto("/signup");
  await hydrated(page);

  // A hydrated control: the password checklist follows what is typed.
  const length = page.getByTestId("check-length");
  await expect(length).toHaveAttribute("data-met", "false");
  await page.getByLabel("Password", { exact: true }).fill("short");
  await expect(length).toHaveAttribute("data-met", "false");
  await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await expect(length).toHaveAttribute("data-met", "true");
  await page.getByLabel("Repeat password").fill(PASSWORD);
  await expect(page.getByTestId("check-match")).toHaveAttribute("data-met", "true");
  await page.screenshot({ path: "test-results/screens/signup.png", fullPage: true });

  await page.getByLabel("Email").fill(email);
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page.getByRole("heading", { name: "Overview" })).toBeVisible();
  await expect(page.getByTestId("signed-in-email")).toHaveText(email);
  await page.screenshot({ path: "test-results/screens/overview-trader.png", fullPage: true });

  await signOut(page);
  await expect(page.getByTestId("signed-in-email")).toHaveCount(0);

  await logIn(page, email);
  await expect(page.getByRole("heading", { name: "Overview" })).toBeVisible();
  await expect(page.getByTestId("signed-in-email")).toHaveText(email);
});

test("a wrong password and an unknown email show the same generic error", async ({ page }) => {
  const email = uniqueEmail("victim");
  await signUp(page, email);
  await signOut(page);

  await logIn(page, email, "definitely not it");
  const alert = page.getByRole("alert");
  await expect(alert).toHaveText("Invalid email or password.");
  await page.screenshot({ path: "test-results/screens/login-error.png", fullPage: true });

  await logIn(page, uniqueEmail("nobody"), "definitely not it");
  await expect(page.getByRole("alert")).toHaveText("Invalid email or password.");
  await expect(page.getByTestId("signed-in-email")).toHaveCount(0);
});

test("sign-up input errors are explained", async ({ page }) => {
  await page.goto("/signup");
  await hydrated(page);
  await page.getByLabel("Email").fill(uniqueEmail("mismatch"));
  await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await page.getByLabel("Repeat password").fill(PASSWORD + "!");
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page.getByRole("alert")).toHaveText("The two passwords do not match.");
});

test("an admin asks for the reviewer role, the operator grants it, and the reviewer verifies the audit chain", async ({ page, browser }) => {
  const reviewerEmail = uniqueEmail("reviewer");
  await signUp(page, reviewerEmail);
  // A trader has no audit log.
  await expect(page.getByRole("link", { name: "Audit log" })).toHaveCount(0);
  await page.goto("/audit");
  await expect(page.getByText("This page is for the Compliance reviewer or Admin role.")).toBeVisible();
  await signOut(page);

  const { page: admin, key: adminKey } = await adminWithKey(browser);
  await admin.goto("/");
  await admin.screenshot({ path: "test-results/screens/overview-admin.png", fullPage: true });
  await admin.getByRole("link", { name: "Users", exact: true }).click();
  await hydrated(admin);
  const row = admin.getByRole("row").filter({ hasText: reviewerEmail });
  await row.getByRole("combobox").selectOption("reviewer");
  // Without a step-up the change is refused and nothing changes; with the key it is asked for.
  await clickUntil(row.getByRole("button", { name: "Save" }), () =>
    expect(admin.getByTestId("step-up-panel")).toContainText("Admin actions need your security key", { timeout: 2_000 }),
  );
  await admin.screenshot({ path: "test-results/screens/users-step-up.png", fullPage: true });
  await stepUpWithKey(admin);
  await saveAdminKey(adminKey);
  // The refused attempt reloaded the list, so choose the role again.
  await row.getByRole("combobox").selectOption("reviewer");
  await row.getByRole("button", { name: "Save" }).click();
  await expect(admin.getByTestId("step-up-panel")).toHaveCount(0);
  // A reviewer releases quarantines, so one admin's change is only a request...
  await expect(admin.getByTestId("role-requested")).toContainText("takes effect when another admin makes the same change");
  await expect(row.getByTestId("role-pending")).toContainText(/You asked for (compliance )?reviewer/);
  await admin.screenshot({ path: "test-results/screens/users-reviewer-request.png", fullPage: true });
  // ...which, with no second admin, the operator grants at the server, as the page says.
  serverCli(["set-role", "--email", reviewerEmail, "--role", "reviewer"]);
  await admin.reload();
  await expect(admin.getByRole("row").filter({ hasText: reviewerEmail }).getByRole("combobox")).toHaveValue("reviewer");
  await admin.screenshot({ path: "test-results/screens/users.png", fullPage: true });

  // Granting the admin role takes a second admin too.
  await hydrated(admin);
  const again = admin.getByRole("row").filter({ hasText: reviewerEmail });
  await again.getByRole("combobox").selectOption("admin");
  await again.getByRole("button", { name: "Save" }).click();
  await expect(admin.getByTestId("role-requested")).toContainText("takes effect when another admin makes the same change");
  await expect(again.getByTestId("role-pending")).toContainText("You asked for admin");
  await admin.reload();
  await expect(admin.getByRole("row").filter({ hasText: reviewerEmail }).getByRole("combobox")).toHaveValue("reviewer");
  await admin.screenshot({ path: "test-results/screens/users-role-request.png", fullPage: true });

  await logIn(page, reviewerEmail);
  await page.getByRole("link", { name: "Audit log", exact: true }).click();
  await expect(page.getByTestId("audit-table")).toBeVisible();
  await expect(page.getByTestId("audit-table")).toContainText("account.role_change");
  await expect(page.getByTestId("audit-table")).toContainText(ADMIN_EMAIL);
  await hydrated(page);
  await page.getByTestId("verify-chain").click();
  await expect(page.getByTestId("chain-status")).toHaveAttribute("data-intact", "true");
  await expect(page.getByTestId("chain-status")).toContainText("Chain intact");
  await page.screenshot({ path: "test-results/screens/audit.png", fullPage: true });
});

test("signing out everywhere ends the other browser's session too", async ({ browser }) => {
  const email = uniqueEmail("everywhere");
  const laptop = await browser.newPage();
  await signUp(laptop, email);
  const phoneContext = await browser.newContext();
  const phone = await phoneContext.newPage();
  await logIn(phone, email);
  await expect(phone.getByTestId("signed-in-email")).toHaveText(email);

  await laptop.goto("/account");
  await hydrated(laptop);
  await laptop.screenshot({ path: "test-results/screens/account.png", fullPage: true });
  await laptop.getByRole("button", { name: "Sign out everywhere" }).click();
  await expect(laptop.getByRole("heading", { name: "Sign in" })).toBeVisible();

  await phone.goto("/account");
  await expect(phone.getByText("You need to be signed in to see this page.")).toBeVisible();
  await phoneContext.close();
});
