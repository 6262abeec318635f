import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Browser, Locator, Response } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminFetch, startServer, type RunningServer } from '../helpers/server.js';
import { expectCleanConversation, fail, firstViewport, launchChromium, openPage, type ViewerPage } from './viewer-page.js';

/**
 * Photos and PDFs made into DICOM by PACS-lite's own photo route (POST /api/v1/photos, issue 15), seen in the OHIF it
 * serves: the photo drawn, the PDF shown. The server runs in the trusted-LAN mode of ohif.test.ts (OHIF 3.13 cannot
 * be given an API key); the form is posted with the administrator's key, as the upload role would.
 */
describe('OHIF shows the photos and PDFs of the photo route, in Chromium', () => {
  let pacs: RunningServer;
  let browser: Browser;
  let photo: Buffer;
  let pdf: Buffer;
  let study: string;
  let photoSop: string;
  let pdfSop: string;
  const artifacts = path.join(os.tmpdir(), `pacs-e2e-photos-${process.pid}`);

  beforeAll(async () => {
    await fs.mkdir(artifacts, { recursive: true });
    pacs = await startServer({ env: { PACS_CORS_ORIGINS: 'https://nowhere.invalid', PACS_ANONYMOUS_READ: 'true' } });
    [photo, pdf] = [await woundPhoto(), referralPdf()];
    // One visit: the photo and the referral letter in one form, as the upload page sends them.
    const form = new FormData();
    for (const [name, value] of Object.entries({ patient_id: 'E2E-WOUND', patient_name: 'Wound^Walter', study_description: 'Wound check', body_part: 'foot' })) form.append(name, value);
    form.append('file', new Blob([new Uint8Array(photo)], { type: 'image/jpeg' }), 'heel.jpg');
    form.append('file', new Blob([new Uint8Array(pdf)], { type: 'application/pdf' }), 'referral.pdf');
    const response = await adminFetch(`${pacs.url}/api/v1/photos`, { method: 'POST', body: form });
    const answer = (await response.json()) as { study_uid: string; files: Array<{ sop_instance_uid: string }> };
    expect(response.status, JSON.stringify(answer)).toBe(200);
    study = answer.study_uid;
    [photoSop, pdfSop] = answer.files.map((f) => f.sop_instance_uid) as [string, string];
    browser = await launchChromium();
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await pacs?.stop();
  });

  it('draws the photo in its colours from the JPEG as sent: red left, blue right, the white disc in the middle', async () => {
    const v = await openPage(browser, pacs, artifacts);
    const { page } = v;
    const frames = answers(v, `/instances/${photoSop}/frames/`);
    try {
      await page.goto(`${pacs.url}/viewer?StudyInstanceUIDs=${study}`);
      const viewport = await firstViewport(v);
      let last: Colours | undefined;
      for (const deadline = Date.now() + 30_000; Date.now() < deadline; await page.waitForTimeout(500)) {
        last = await colours(viewport);
        if (last.red > 0.5 && last.blue > 0.5 && last.white > 0.1) break;
      }
      // Grey would have no red or blue; YBR read as RGB turns the red half blue and the blue half green.
      if (!last || last.red <= 0.5 || last.blue <= 0.5 || last.white <= 0.1) await fail(v, `photo: not drawn in its colours (${coloursSeen(last)})`);
      // The browser decoded the sender's JPEG itself: the frame it was sent holds the photo's scan byte for byte.
      const frame = frames.find((f) => f.status === 200);
      if (!frame) await fail(v, 'photo: its frame was never answered 200');
      const scan = photo.subarray(photo.indexOf(Buffer.from([0xff, 0xda])));
      expect((await frame!.body).includes(scan), 'the frame OHIF drew carries the photo\'s JPEG scan as sent').toBe(true);
      await expectCleanConversation(v);
    } finally {
      await page.context().close();
    }
  }, 120_000);

  it('shows the PDF in OHIF\'s PDF viewport, fetched by its BulkDataURI and displayed by Chromium\'s PDF viewer', async () => {
    const v = await openPage(browser, pacs, artifacts);
    const { page } = v;
    const bulkData = answers(v, `/instances/${pdfSop}/bulkdata/00420011`);
    try {
      await page.goto(`${pacs.url}/viewer?StudyInstanceUIDs=${study}`);
      // The photo's series opens first; a double click on the documents' series in the study browser shows the PDF.
      await firstViewport(v);
      await page.getByText('Documents', { exact: true }).first().dblclick();
      const object = page.locator('object[type="application/pdf"][data]').first();
      await object.waitFor({ timeout: 30_000 }).catch(async () => fail(v, 'pdf: OHIF\'s PDF viewport never appeared'));

      // With singlepart naming bulkdata but not pdf (app-config.js), OHIF GETs the EncapsulatedDocument's BulkDataURI
      // as it loads the metadata, and shows the value from a blob: URL typed application/pdf, not a /rendered URL.
      if (!bulkData.some((b) => b.status === 200)) await fail(v, 'pdf: OHIF never had the EncapsulatedDocument\'s bulk data answered 200');
      const shown = await object.evaluate(async (o: HTMLObjectElement) => {
        const blob = await (await fetch(o.data)).blob();
        return { url: o.data, type: blob.type, bytes: Array.from(new Uint8Array(await blob.arrayBuffer())) };
      });
      expect(shown.url.startsWith(`blob:${pacs.url}/`), shown.url).toBe(true);
      expect(shown.type).toBe('application/pdf');
      // The letter as sent, with the NUL that pads an OB value of odd length (PS3.5 6.2).
      expect(Buffer.from(shown.bytes).equals(padded(pdf))).toBe(true);

      // Chromium's PDF viewer draws the page: the letter's orange box fills a good part of the viewport.
      let orange = 0;
      for (const deadline = Date.now() + 30_000; orange < 0.1 && Date.now() < deadline; await page.waitForTimeout(500)) orange = await orangeShare(object);
      if (orange < 0.1) await fail(v, `pdf: the page was not drawn (${(orange * 100).toFixed(1)} % orange)`);
      await expectCleanConversation(v);
    } finally {
      await page.context().close();
    }
  }, 120_000);
});

/** PACS-lite's answers to the browser's requests whose URL holds `part`, recorded as they come, their bodies read on demand. */
function answers(v: ViewerPage, part: string): Array<{ status: number; body: Promise<Buffer> }> {
  const seen: Array<{ status: number; body: Promise<Buffer> }> = [];
  v.page.on('response', (response: Response) => {
    if (!response.url().startsWith(`${v.pacs.dicomweb}/`) || !response.url().includes(part)) return;
    seen.push({ status: response.status(), body: response.body().catch(() => Buffer.alloc(0)) });
  });
  return seen;
}

const WIDTH = 640;
const HEIGHT = 480;

/**
 * A wound photo as a phone takes it (baseline JPEG, 4:2:0): the left half red and the right half blue, each brighter
 * towards the bottom, and a white disc in the middle.
 */
async function woundPhoto(): Promise<Buffer> {
  const rgb = Buffer.alloc(WIDTH * HEIGHT * 3);
  for (let y = 0; y < HEIGHT; y++) {
    const shade = Math.round((100 * y) / HEIGHT);
    for (let x = 0; x < WIDTH; x++) {
      const inDisc = (x - WIDTH / 2) ** 2 + (y - HEIGHT / 2) ** 2 < (HEIGHT / 5) ** 2;
      rgb.set(inDisc ? [255, 255, 255] : x < WIDTH / 2 ? [140 + shade, 30, 30] : [30, 60, 140 + shade], (y * WIDTH + x) * 3);
    }
  }
  return sharp(rgb, { raw: { width: WIDTH, height: HEIGHT, channels: 3 } }).jpeg({ quality: 90, chromaSubsampling: '4:2:0' }).toBuffer();
}

/** Shares of the middle of the viewport (the edges hold overlays): red in its left half, blue in its right, white in all. */
type Colours = { red: number; blue: number; white: number };

async function colours(viewport: Locator): Promise<Colours> {
  const png = await viewport.screenshot({ animations: 'disabled', caret: 'hide' });
  const { data, info } = await middle(png);
  let [red, blue, white] = [0, 0, 0];
  for (let y = 0; y < info.height; y++) {
    for (let x = 0; x < info.width; x++) {
      const i = (y * info.width + x) * 3;
      const [r, g, b] = [data[i]!, data[i + 1]!, data[i + 2]!];
      if (r >= 235 && g >= 235 && b >= 235) white++;
      else if (x < info.width / 2 && r > 120 && r > g + 70 && r > b + 70) red++;
      else if (x >= info.width / 2 && b > 120 && b > r + 70 && b > g + 50) blue++;
    }
  }
  const half = (info.width * info.height) / 2;
  return { red: red / half, blue: blue / half, white: white / (2 * half) };
}

function coloursSeen(c: Colours | undefined): string {
  return c ? `${(c.red * 100).toFixed(1)} % red on the left, ${(c.blue * 100).toFixed(1)} % blue on the right, ${(c.white * 100).toFixed(1)} % white` : 'no capture';
}

async function middle(png: Buffer) {
  const { width, height } = await sharp(png).metadata();
  const box = { left: Math.round(width! * 0.2), top: Math.round(height! * 0.2), width: Math.round(width! * 0.6), height: Math.round(height! * 0.6) };
  return sharp(png).extract(box).removeAlpha().raw().toBuffer({ resolveWithObject: true });
}

/** A one-page referral letter: a heading, a few lines of text and a large orange box (0.95 0.55 0.05). */
function referralPdf(): Buffer {
  const lines = ['Referral: wound clinic', 'Patient: Wound, Walter (E2E-WOUND)', 'Please assess the ulcer on the left heel,', 'photographed today at the dressing change.', 'Dressings changed every second day since May.', 'No fever; diabetic, on insulin.', 'Wound about 3 by 2 cm, clean edges, some slough.', 'Dr A. Example, general practice'];
  const text = lines.map((line, i) => `BT /F1 ${i === 0 ? 24 : 14} Tf 72 ${720 - i * 24} Td (${line}) Tj ET`);
  const content = ['0.95 0.55 0.05 rg 72 200 468 320 re f', '0 0 0 rg', ...text].join('\n');
  const objects = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>',
    `<< /Length ${content.length} >>\nstream\n${content}\nendstream`,
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>',
  ];
  let body = '%PDF-1.4\n';
  const offsets = objects.map((object, i) => {
    const offset = body.length;
    body += `${i + 1} 0 obj\n${object}\nendobj\n`;
    return offset;
  });
  const xref = body.length;
  body += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n${offsets.map((o) => `${String(o).padStart(10, '0')} 00000 n \n`).join('')}`;
  body += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  const letter = Buffer.from(body, 'latin1');
  // Over the 1 KiB the metadata carries inline: OHIF has to fetch it by its BulkDataURI.
  if (letter.length <= 1024) throw new Error(`the referral PDF is only ${letter.length} bytes`);
  return letter;
}

function padded(value: Buffer): Buffer {
  return value.length % 2 ? Buffer.concat([value, Buffer.from([0])]) : value;
}

/** The share of the middle of the PDF viewport in the letter's orange. */
async function orangeShare(object: Locator): Promise<number> {
  const { data, info } = await middle(await object.screenshot({ animations: 'disabled', caret: 'hide' }));
  let orange = 0;
  for (let i = 0; i < data.length; i += 3) if (data[i]! > 200 && data[i + 1]! > 100 && data[i + 1]! < 180 && data[i + 2]! < 80) orange++;
  return orange / (info.width * info.height);
}
