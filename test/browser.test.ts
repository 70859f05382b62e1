/**
 * End to end in real headless Chromium (Debian `chromium` + playwright-core): the web page lists the
 * model, an image picked via the file input is scored, and the verdict, score and heatmap appear.
 * Skipped (with a message) when /usr/bin/chromium is missing; CI installs it (`apt-get install -y chromium`).
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningServer, startServer } from '../lib/serve/start';
import { makeTinyPackage, testImage, tinyCalibration, useWasm } from './support/tiny-package';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) console.warn(`browser test skipped: ${CHROMIUM} not found (apt-get install -y chromium)`);

let root: string;
let server: RunningServer;
let browser: BrowserContext;

describe.skipIf(!hasChromium)('web page in headless Chromium', () => {
  beforeAll(async () => {
    await useWasm();
    root = await mkdtemp(join(tmpdir(), 'browser-test-'));
    const runDir = join(root, 'runs', 'demo', 'r1');
    await makeTinyPackage(join(runDir, 'widget', 'checkpoint', 'package'), {
      runId: 'r1',
      pipeline: 'demo',
      // Between the random-init model's scores of the two test pictures, so the page shows both verdicts.
      calibration: tinyCalibration(32, { imageThreshold: 0.8, scoreNorm: { min: 0.3, max: 1.3 } }),
    });
    await mkdir(join(runDir, 'widget', 'report'), { recursive: true });
    await writeFile(join(runDir, 'widget', 'report', 'report.html'), '<h1>widget report</h1>');
    server = await startServer({ models: join(root, 'runs'), port: 0, logger: false });
    // A fresh profile per run (playwright passes it as --user-data-dir).
    browser = await chromium.launchPersistentContext(join(root, 'chromium-profile'), {
      executablePath: CHROMIUM,
      viewport: { width: 1100, height: 760 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.app.close();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('scores an uploaded image and shows verdict, score and heatmap', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${server.url}/`);
    await expect.poll(() => page.locator('#model option').count()).toBe(1);
    expect(await page.locator('#model').inputValue()).toBe('widget');

    const good = join(root, 'good.png');
    const bad = join(root, 'scratch.png');
    await writeFile(good, await testImage('png', { size: 96 }));
    await writeFile(bad, await testImage('png', { size: 96, defect: true }));
    await page.setInputFiles('#file', [good, bad]);
    await page.waitForSelector('#status:has-text("Scored 2 images")', { timeout: 30_000 });

    const cards = page.locator('.card');
    expect(await cards.count()).toBe(2);
    for (let i = 0; i < 2; i++) {
      const card = cards.nth(i);
      expect(await card.getAttribute('data-verdict')).toMatch(/^(good|defective)$/);
      expect(await card.locator('.verdict').textContent()).toMatch(/^(good|defective)$/);
      expect(Number(await card.locator('.score').textContent())).not.toBeNaN();
      expect(Number(await card.locator('.norm').textContent())).toBeGreaterThanOrEqual(0);
      for (const sel of ['.heatmap', '.mask', '.original']) {
        await expect
          .poll(() => card.locator(sel).evaluate((img) => (img as HTMLImageElement).naturalWidth), {
            timeout: 10_000,
          })
          .toBeGreaterThan(0);
      }
    }

    const shot = await page.screenshot({ fullPage: true });
    const screenshotDir = process.env.SCREENSHOT_DIR ?? root;
    await mkdir(screenshotDir, { recursive: true });
    await writeFile(join(screenshotDir, 'browser-predict.png'), shot);
    expect(shot.length).toBeGreaterThan(20_000);
    const stats = await sharp(shot).stats();
    // A blank or single-colour page has ~0 deviation; the page with images and heatmaps has plenty.
    expect(Math.max(...stats.channels.slice(0, 3).map((c) => c.stdev))).toBeGreaterThan(20);

    // The reports link leads to the run's report.
    await page.click('#reports-link');
    await page.click('text=demo/r1/widget/report/report.html');
    await expect.poll(() => page.locator('h1').textContent()).toBe('widget report');
    expect(errors).toEqual([]);
    await page.close();
  });

  it('asks for the token when the server requires one, then works (reports too, via the cookie)', async () => {
    const secured = await startServer({
      models: join(root, 'runs'),
      port: 0,
      logger: false,
      token: 'tok-123',
    });
    try {
      const page = await browser.newPage();
      await page.goto(`${secured.url}/`);
      await page.waitForSelector('#token-box:not([hidden])');
      await expect.poll(() => page.locator('#status').textContent()).toMatch(/token/);
      await page.fill('#token', 'tok-123');
      await page.press('#token', 'Enter');
      await expect.poll(() => page.locator('#model option').count()).toBe(1);
      await page.goto(`${secured.url}/reports/demo/r1/widget/report/report.html`);
      expect(await page.locator('h1').textContent()).toBe('widget report');
      await page.close();
    } finally {
      await secured.app.close();
    }
  });
});
