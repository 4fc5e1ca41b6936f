// The auditor's view and reports: a reviewer filters the log, opens an event, verifies the chain
// against a signed checkpoint, downloads the CSV and the PDF report, and the server's own
// `report verify` accepts both offline, and refuses a tampered copy (exit 1, naming the row).
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { expect, test } from "./fixtures";
import { hydrated, logIn, signUpReviewer, uniqueEmail } from "./helpers";

const BINARY = path.resolve(__dirname, "../../target/debug/cryptopulse");
const DOWNLOADS = path.resolve(__dirname, "../test-results/reports");

/** Runs `cryptopulse report verify FILE --public-key KEY`: no database, no server. */
function reportVerify(file: string, key: string) {
  const run = spawnSync(BINARY, ["report", "verify", file, "--public-key", key], { encoding: "utf8" });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

test("a reviewer filters the log, verifies the chain, and downloads reports that verify offline", async ({ page }) => {
  test.setTimeout(120_000);
  fs.mkdirSync(DOWNLOADS, { recursive: true });
  const email = uniqueEmail("auditor");
  await signUpReviewer(page, email);
  // A failed sign-in, so the log has auth events of more than one outcome.
  await page.context().clearCookies();
  await logIn(page, email, "not the password at all");
  await expect(page.getByRole("alert")).toBeVisible();
  await logIn(page, email);
  await expect(page.getByRole("heading", { name: "Overview" })).toBeVisible();

  // Filter by action prefix: the URL carries it, and only matching rows are shown.
  await page.goto("/audit");
  await hydrated(page);
  await expect(page.getByTestId("audit-table")).toBeVisible();
  await page.getByTestId("filter-action").fill("auth.");
  await page.getByTestId("apply-filter").click();
  await expect(page).toHaveURL(/\/audit\?action=auth\.$/);
  // The rows shown are those fetched for this filter (the old list stays up while it loads).
  const results = page.getByTestId("events-results");
  await expect(results).toHaveAttribute("data-query", "action=auth.");
  const rows = page.getByTestId("audit-row");
  await expect(rows.first()).toBeVisible();
  const actions = await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-action") ?? ""));
  expect(actions.length).toBeGreaterThan(1);
  expect(actions.every((a) => a.startsWith("auth."))).toBe(true);
  await page.getByTestId("filter-outcome").selectOption("failure");
  await page.getByTestId("apply-filter").click();
  await expect(page).toHaveURL(/outcome=failure/);
  await expect(results).toHaveAttribute("data-query", /outcome=failure/);
  await expect(rows.first()).toBeVisible();
  const outcomes = await rows.evaluateAll((trs) => trs.map((tr) => tr.querySelector("td:nth-child(5)")?.textContent ?? ""));
  expect(outcomes.every((o) => o === "failure")).toBe(true);
  await page.goBack();
  await expect(page).toHaveURL(/\/audit\?action=auth\.$/);
  await expect(page.getByTestId("filter-outcome")).toHaveValue("");
  await expect(results).toHaveAttribute("data-query", "action=auth.");
  // Back shows the earlier list again, not the failures only.
  await expect(rows).toHaveCount(actions.length);
  await expect(page.getByTestId("events-summary")).toContainText(`${actions.length} events`);
  await page.screenshot({ path: "test-results/screens/audit-filtered.png", fullPage: true });

  // One event: its fields and the hash links either side.
  const seq = Number(await rows.first().getAttribute("data-seq"));
  await rows.first().getByTestId("open-event").click();
  await expect(page).toHaveURL(new RegExp(`/audit/event/${seq}$`));
  await expect(page.getByTestId("event-detail")).toBeVisible();
  await expect(page.getByTestId("event-action")).toHaveText(/^auth\./);
  await expect(page.getByTestId("event-details")).toContainText("{");
  const prevHash = await page.getByTestId("prev-hash").textContent();
  await page.screenshot({ path: "test-results/screens/audit-event.png", fullPage: true });
  await page.getByTestId("previous-event").click();
  await expect(page).toHaveURL(new RegExp(`/audit/event/${seq - 1}$`));
  await expect(page.getByTestId("event-hash")).toHaveText(prevHash ?? "");
  await expect(page.getByTestId("next-event")).toHaveText(`event #${seq}`);

  // Sign a checkpoint, then verify in the background: intact, through the checkpoint.
  await page.goto("/audit");
  await hydrated(page);
  await page.getByTestId("sign-checkpoint").click();
  await expect(page.getByTestId("checkpoint-row").first()).toBeVisible();
  await page.getByTestId("verify-chain").click();
  const status = page.getByTestId("chain-status");
  await expect(status).toHaveAttribute("data-intact", "true", { timeout: 30_000 });
  await expect(status).toContainText("Chain intact through seq");
  await expect(status).toContainText("matches the checkpoint");
  await page.screenshot({ path: "test-results/screens/audit-verified.png", fullPage: true });

  // The report key, as published.
  const published = await page.request.get("/.well-known/cryptopulse-report-key");
  expect(published.ok()).toBe(true);
  const key = (await published.text()).trim();
  expect(key).toMatch(/^ed25519:[0-9a-f]{64}$/);

  // Reports of the auth events: the filter comes along from the audit view's link.
  await page.goto("/audit?action=auth.");
  await hydrated(page);
  await page.getByRole("link", { name: /Download these events as a signed report/ }).click();
  await expect(page).toHaveURL(/\/reports\?action=auth\.$/);
  await hydrated(page);
  await expect(page.getByTestId("filter-action")).toHaveValue("auth.");
  await expect(page.getByTestId("report-key")).toHaveText(key);
  await expect(page.getByTestId("download-csv")).toHaveAttribute("href", "/reports/audit.csv?action=auth.");

  const [csvDownload] = await Promise.all([page.waitForEvent("download"), page.getByTestId("download-csv").click()]);
  expect(csvDownload.suggestedFilename()).toMatch(/^cryptopulse-audit-[\w-]+\.csv$/);
  const csv = path.join(DOWNLOADS, "audit.csv");
  await csvDownload.saveAs(csv);

  await page.getByTestId("build-pdf").click();
  await expect(page.getByTestId("pdf-progress")).toHaveAttribute("data-finished", "true", { timeout: 60_000 });
  await page.screenshot({ path: "test-results/screens/reports.png", fullPage: true });
  const [pdfDownload] = await Promise.all([page.waitForEvent("download"), page.getByTestId("download-pdf").click()]);
  expect(pdfDownload.suggestedFilename()).toMatch(/\.pdf$/);
  const pdf = path.join(DOWNLOADS, "audit.pdf");
  await pdfDownload.saveAs(pdf);
  expect(fs.readFileSync(pdf).subarray(0, 5).toString()).toBe("%PDF-");

  // Offline verification of both downloads.
  for (const file of [csv, pdf]) {
    const run = reportVerify(file, key);
    expect(run.status, run.output).toBe(0);
    expect(run.output).toContain("report OK");
  }

  // A tampered copy: one data row's action changed (auth.login → auth.logout or back).
  const text = fs.readFileSync(csv, "utf8");
  const lines = text.split("\n");
  const row = lines.findIndex((line, i) => i > 0 && !line.startsWith("#") && line.includes(",auth.login,"));
  expect(row, "a data row with auth.login").toBeGreaterThan(0);
  lines[row] = lines[row].replace(",auth.login,", ",auth.logout,");
  const tampered = path.join(DOWNLOADS, "audit-tampered.csv");
  fs.writeFileSync(tampered, lines.join("\n"));
  const run = reportVerify(tampered, key);
  expect(run.status, run.output).toBe(1);
  expect(run.output).toMatch(/row \d+ \(seq \d+\)/);
});
