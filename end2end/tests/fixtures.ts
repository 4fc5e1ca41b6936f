// The suite's `test`: Playwright's, plus a check after every test that the server logged no
// render fault while it ran (a page built twice, a resource run after its owner was dropped,
// a render cut off at its deadline, a panic). A page can look right in the browser while the
// server logs these, so the log is the place to catch them.
import { expect, test as base } from "@playwright/test";
import fs from "node:fs";

/** Server log lines that mean a page render went wrong. */
const RENDER_FAULTS = [/missing from context/i, /page render did not/, /panicked at/];

/** The server's log lines written since byte `from` of the log that scripts/test.sh keeps. */
function serverLinesSince(log: string, from: number): string[] {
  const text = fs.readFileSync(log).subarray(from).toString("utf8");
  // The same file carries Playwright's own output: keep the server's structured lines and
  // Rust's panic messages.
  return text.split("\n").filter((line) => line.includes('"level":') || line.startsWith("thread '"));
}

export const test = base.extend<{ serverLogClean: void }>({
  serverLogClean: [
    async ({}, use) => {
      const log = process.env.E2E_SERVER_LOG!;
      const from = fs.statSync(log).size;
      await use();
      // The last requests' lines may still be on their way through the pipe.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const faults = serverLinesSince(log, from).filter((line) => RENDER_FAULTS.some((fault) => fault.test(line)));
      expect(faults, "render faults in the server log during this test").toEqual([]);
    },
    { auto: true },
  ],
});

export { expect };
