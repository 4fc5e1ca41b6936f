// Role-checked pages: the server resolves the session once, streams the page after the check,
// builds it once, and the browser hydrates it (the fixture fails a test whose pages made the
// server log a render fault).
import { expect, test } from "./fixtures";
import { adminWithKey, hydrated, saveAdminKey, signUp, signUpReviewer, uniqueEmail } from "./helpers";

test("a visitor is asked to sign in, and a trader is told which role a page is for", async ({ page }) => {
  await page.goto("/admin/risk");
  await hydrated(page);
  await expect(page.getByRole("heading", { name: "Please sign in" })).toBeVisible();
  await signUp(page, uniqueEmail("roles-trader"));
  await page.goto("/admin/risk");
  await hydrated(page);
  await expect(page.getByText("This page is for the Admin role.")).toBeVisible();
  await page.goto("/review");
  await hydrated(page);
  await expect(page.getByText("This page is for the Compliance reviewer or Admin role.")).toBeVisible();
});

test("the admin's pages show their content and hydrate, one after another", async ({ browser }) => {
  const { page: admin, key } = await adminWithKey(browser);
  const pages: [string, string][] = [
    ["/admin/risk", "kill-switch"],
    ["/admin/users", "users-table"],
    ["/admin/vault", "current-kms-key"],
    ["/audit", "audit-table"],
    ["/review", "case-list"],
    ["/keys", "rewrap"],
  ];
  for (const [path, part] of pages) {
    await admin.goto(path);
    await hydrated(admin);
    await expect(admin.getByTestId(part).first(), path).toBeVisible();
  }
  await admin.goto("/admin/risk");
  await hydrated(admin);
  await expect(admin.getByTestId("user-controls")).toBeVisible();
  await admin.screenshot({ path: "test-results/screens/risk-admin.png", fullPage: true });
  await saveAdminKey(key);
  await admin.context().close();
});

test("a reviewer's review page shows its cases and hydrates", async ({ page }) => {
  await signUpReviewer(page, uniqueEmail("roles-reviewer"));
  // The role is read from the store on each request: the next page already has it.
  await page.goto("/review");
  await hydrated(page);
  await expect(page.getByTestId("case-list")).toBeVisible();
  await expect(page.getByRole("link", { name: "Review", exact: true })).toBeVisible();
  await page.getByRole("tab", { name: "All" }).click();
  await expect(page.getByRole("tab", { name: "All" })).toHaveAttribute("aria-selected", "true");
  await page.screenshot({ path: "test-results/screens/review-reviewer.png", fullPage: true });
});
