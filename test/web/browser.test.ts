/**
 * The playground end to end in headless Chromium (Debian's package, driven by playwright-core) against the real
 * server, chat core and demo engine. Screenshots are taken on every run; `UPDATE_SCREENSHOTS=1` writes them to
 * docs/images/ (the README shows them), otherwise they go to a temporary folder so a test run changes no file.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EngineFixture, openTestEngine, RecordingEngine } from '../chat/engine-fixture.js';
import { pngBytes } from '../chat/images.js';
import { ROOT } from '../helpers/shared.js';
import { GatedEngine, startWebServer, until, type WebServer } from './harness.js';

const CHROMIUM = '/usr/bin/chromium';
const HAS_CHROMIUM = existsSync(CHROMIUM);
if (!HAS_CHROMIUM) {
  console.warn(`[tests] ${CHROMIUM} not found (apt-get install chromium); skipping the browser tests`);
}

let fixture: EngineFixture;
let recording: RecordingEngine;
let gated: GatedEngine;
let web: WebServer;
let profile: string;
let browser: BrowserContext;
let screenshots: string;

beforeAll(async () => {
  if (!HAS_CHROMIUM) return;
  fixture = await openTestEngine();
  recording = new RecordingEngine(fixture.engine.inner);
  gated = new GatedEngine(recording);
  web = await startWebServer(gated);
  profile = mkdtempSync(join(tmpdir(), 'blip2-chromium-'));
  screenshots = process.env.UPDATE_SCREENSHOTS ? join(ROOT, 'docs', 'images') : join(profile, 'screenshots');
  mkdirSync(screenshots, { recursive: true });
  // A persistent context is how Playwright takes a --user-data-dir: a fresh one per run.
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
    ],
    viewport: { width: 760, height: 900 },
  });
});

afterAll(async () => {
  gated?.release();
  await browser?.close();
  await web?.stop();
  await fixture?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

async function choose(page: Page, name: string, mimeType: string, bytes: Uint8Array): Promise<void> {
  await page.setInputFiles('#file', { name, mimeType, buffer: Buffer.from(bytes) });
}

const bubbles = (page: Page, selector: string) => page.locator(`#thread li${selector}`);

describe.skipIf(!HAS_CHROMIUM)('web playground in Chromium', () => {
  it('upload → caption → follow-up → reload keeps the thread → a PDF gets the polite refusal', async () => {
    const page = await browser.newPage();
    await page.goto(`${web.url}/`);
    await expect.poll(() => page.locator('#demo').isVisible()).toBe(true);
    expect(await page.locator('#model').textContent()).toContain(recording.modelId);

    await choose(page, 'square.png', 'image/png', await pngBytes(61, 96));
    await bubbles(page, '.caption .meta').first().waitFor();
    const caption = recording.results.at(-1)!;
    expect(recording.requests.at(-1)).toMatchObject({ task: 'caption' });
    expect(await bubbles(page, '.caption p').first().textContent()).toBe(caption.text.trim());
    expect(await bubbles(page, '.caption .meta').textContent()).toMatch(/vision \d+ ms.*picture encoded/);
    expect(page.url()).toMatch(/\?c=[0-9a-f-]{36}$/);

    // The keyboard alone: the question box has focus after an answer; Enter sends.
    expect(await page.evaluate('document.activeElement && document.activeElement.id')).toBe('question');
    await page.keyboard.type('what colour is it?');
    await page.keyboard.press('Enter');
    // The finished answer carries its timings (a streamed partial one does not).
    await bubbles(page, '.bot:not(.caption) .meta').first().waitFor();
    expect(recording.requests.at(-1)).toMatchObject({ question: 'what colour is it?' });
    const answer = recording.results.at(-1)!;
    expect(answer.imageCached).toBe(true);
    expect(await bubbles(page, '.bot:not(.caption) p').first().textContent()).toBe(answer.text.trim());
    expect(await bubbles(page, '.bot:not(.caption) .meta').textContent()).toContain('picture from the cache');
    await page.screenshot({ path: join(screenshots, 'web-playground.png') });

    const url = page.url();
    await page.reload();
    await bubbles(page, '.bot:not(.caption) .meta').first().waitFor();
    expect(page.url()).toBe(url);
    expect(await bubbles(page, '').allTextContents()).toEqual([
      expect.stringContaining(caption.text.trim()),
      'what colour is it?',
      expect.stringContaining(answer.text.trim()),
    ]);
    expect(await page.locator('#preview').isVisible()).toBe(true);

    await choose(
      page,
      'report.pdf',
      'application/pdf',
      new TextEncoder().encode('%PDF-1.4\n%nothing to see\n'),
    );
    await bubbles(page, '.error').first().waitFor();
    expect(await bubbles(page, '.error').textContent()).toBe(
      '"report.pdf" (application/pdf) is not a picture. Please send a PNG, JPEG, WebP or GIF image.',
    );
    // A new picture started a new thread: the old one is gone from the page and the URL.
    expect(await bubbles(page, '.caption').count()).toBe(0);
    expect(page.url()).not.toContain('?c=');
    await page.close();
  });

  it('reaches the picture chooser with Tab and fits a phone-width screen', async () => {
    const page = await browser.newPage();
    await page.setViewportSize({ width: 375, height: 740 });
    await page.goto(`${web.url}/`);
    await page.keyboard.press('Tab');
    expect(await page.evaluate('document.activeElement && document.activeElement.id')).toBe('file');
    await choose(page, 'photo.png', 'image/png', await pngBytes(62, 96));
    await bubbles(page, '.caption .meta').first().waitFor();
    expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(375);
    await page.locator('#settings summary').focus();
    await page.keyboard.press('Enter');
    expect(await page.locator('#beams').isVisible()).toBe(true);
    await page.screenshot({ path: join(screenshots, 'web-playground-phone.png'), fullPage: true });
    await page.close();
  });

  it('three racing requests show their places in line', async () => {
    const pages = await Promise.all([0, 1, 2].map(() => browser.newPage()));
    await Promise.all(pages.map((p) => p.goto(`${web.url}/`)));
    gated.hold();
    try {
      const before = gated.arrived;
      await choose(pages[0]!, 'first.png', 'image/png', await pngBytes(63, 96));
      await until('the first request to hold the engine', () => gated.arrived === before + 1);
      await choose(pages[1]!, 'second.png', 'image/png', await pngBytes(64, 96));
      await until('the second request to wait', () => gated.queueLength === 1);
      await choose(pages[2]!, 'third.png', 'image/png', await pngBytes(65, 96));
      await until('the third request to wait', () => gated.queueLength === 2);
      const status = (p: Page) => p.locator('#status').textContent();
      await expect
        .poll(() => status(pages[1]!))
        .toBe("The bot is busy with another picture; you're next in line.");
      await expect
        .poll(() => status(pages[2]!))
        .toBe("The bot is busy with other pictures; you're #2 in line.");
      expect(await status(pages[0]!)).toBe('Working on it…');
      await pages[2]!.screenshot({ path: join(screenshots, 'web-playground-queue.png') });
    } finally {
      gated.release();
    }
    for (const page of pages) {
      await bubbles(page, '.caption .meta').first().waitFor();
      expect(await page.locator('#status').textContent()).toBe('');
      await page.close();
    }
  });
});
