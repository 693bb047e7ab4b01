// Drives the dashboard in headless Chromium: node dashboard.cjs BASE_URL API_KEY PIPELINE
// Loads the page, enters the key, waits for PIPELINE's row and for its input counter to
// move, clicks Stop, waits until the row says stopped and the log shows the stop.
// Prints one JSON line with what it saw; exits 1 (with the reason) on anything else.
"use strict";
const { chromium } = require("playwright-core");

const [base, key, pipeline] = process.argv.slice(2);

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
  try {
    const page = await browser.newPage();
    const problems = [];
    page.on("pageerror", e => problems.push(String(e)));
    await page.goto(base + "/", { waitUntil: "load" });
    await page.fill("#key", key);
    await page.click("#connect");
    const row = page.locator(`tr[data-pipeline="${pipeline}"]`);
    await row.waitFor({ timeout: 15000 });
    const status = await row.locator(".status").textContent();
    const first = Number(await row.locator(".input").textContent()) || 0;
    // The counters move while the test feeds the pipeline.
    await page.waitForFunction(([id, n]) => {
      const cell = document.querySelector(`tr[data-pipeline="${id}"] .input`);
      return cell && Number(cell.textContent) > n;
    }, [pipeline, first], { timeout: 20000 });
    const later = Number(await row.locator(".input").textContent());
    const chartPoints = await row.locator("polyline[data-series=rate]").getAttribute("points");
    await row.locator("button.stop").click();
    await page.waitForFunction(id => {
      const cell = document.querySelector(`tr[data-pipeline="${id}"] .status`);
      return cell && cell.textContent === "stopped";
    }, pipeline, { timeout: 20000 });
    await page.waitForFunction(() =>
      [...document.querySelectorAll("#events .event")].some(e => e.textContent.includes("Stopped")),
      null, { timeout: 10000 });
    const stopped = await row.locator(".status").textContent();
    const events = await page.locator("#events .event").allTextContents();
    const startButton = await row.locator("button.start").count();
    if (problems.length) throw new Error("page errors: " + problems.join("; "));
    console.log(JSON.stringify({ status, first, later, stopped, startButton,
                                 chartPoints: chartPoints.split(" ").length, events }));
  } finally {
    await browser.close();
  }
}

main().catch(e => { console.error(String(e && e.stack || e)); process.exit(1); });
