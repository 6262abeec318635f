import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AS_ADMIN, adminFetch, readMultipartResponse, startServer, stow, type RunningServer } from '../helpers/server.js';

/**
 * docs/conformance.md is a promise to integrators; this file keeps it. Every row of the tables marked *checked* there
 * is sent to a real server holding the real-tool fixtures, and must get the status and Content-Type the row states.
 * The rows are read from the document itself, so a row added there is tested without touching this file.
 */

const DOC = path.resolve(import.meta.dirname, '../../docs/conformance.md');
const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/dicom');
type Fixture = { path: string; studyUID: string; seriesUID: string; sopInstanceUID: string };

const MEDIA_COLUMNS = ['Resource', 'Instance', 'Accept', 'Status', 'Content-Type', 'First part'];
const QIDO_COLUMNS = ['Query', 'Status', 'Results'];
const STOW_COLUMNS = ['Resource', 'Content-Type', 'Part Content-Type', 'Status', 'Failure reason'];

/** A table cell: backticks around code dropped; `—` and an empty cell are undefined (nothing sent, nothing checked). */
type Cell = string | undefined;

/** Rows of every Markdown table whose header is `columns`, keyed by column name. */
function tableRows(markdown: string, columns: string[]): Array<Record<string, Cell>> {
  const rows: Array<Record<string, Cell>> = [];
  let header: string[] | undefined;
  for (const line of markdown.split('\n')) {
    if (!line.startsWith('|')) {
      header = undefined;
      continue;
    }
    const cells = line.slice(1, line.trimEnd().endsWith('|') ? line.trimEnd().length - 1 : undefined).split('|').map((c) => c.trim());
    if (!header) {
      header = cells;
      continue;
    }
    if (cells.every((c) => /^:?-+:?$/.test(c)) || header.join('|') !== columns.join('|')) continue;
    rows.push(Object.fromEntries(columns.map((name, i) => [name, cellValue(cells[i] ?? '')])));
  }
  return rows;
}

function cellValue(text: string): Cell {
  const value = text.replace(/^`(.*)`$/, '$1');
  return value === '' || value === '—' ? undefined : value;
}

const markdown = readFileSync(DOC, 'utf8');
const mediaRows = tableRows(markdown, MEDIA_COLUMNS);
const qidoRows = tableRows(markdown, QIDO_COLUMNS);
const stowRows = tableRows(markdown, STOW_COLUMNS);

let server: RunningServer;
const fixtures = new Map<string, Fixture>();

beforeAll(async () => {
  const manifest = JSON.parse(await fs.readFile(path.join(FIXTURES, 'manifest.json'), 'utf8')) as Fixture[];
  for (const f of manifest) fixtures.set(f.path.replace(/\.dcm$/, ''), f);
  server = await startServer();
  // Every fixture, so that the QIDO rows count against a known store.
  const response = await stow(server.dicomweb, await Promise.all(manifest.map((f) => fs.readFile(path.join(FIXTURES, f.path)))));
  expect(response.status, await response.clone().text()).toBe(200);
}, 120_000);

afterAll(async () => {
  await server?.stop();
});

/** The row's path with `{study}`, `{series}`, `{instance}`, `{wado-uri}` and the UIDs of its instance filled in. */
function expand(template: string, instance: string | undefined): string {
  return template.replace(/\{([a-z-]+)\}/gi, (whole, name: string) => {
    const f = instance === undefined ? undefined : fixtures.get(instance);
    if (!f) throw new Error(`${whole} in "${template}" needs an instance from test/fixtures/dicom, not "${instance}"`);
    const study = `/dicom-web/studies/${f.studyUID}`;
    const series = `${study}/series/${f.seriesUID}`;
    const values: Record<string, string> = {
      study,
      series,
      instance: `${series}/instances/${f.sopInstanceUID}`,
      studyUID: f.studyUID,
      seriesUID: f.seriesUID,
      sopUID: f.sopInstanceUID,
      'wado-uri': `/wado?requestType=WADO&studyUID=${f.studyUID}&seriesUID=${f.seriesUID}&objectUID=${f.sopInstanceUID}`,
    };
    if (!(name in values)) throw new Error(`unknown placeholder ${whole} in "${template}"`);
    return values[name]!;
  });
}

type Answer = { status: number; headers: http.IncomingHttpHeaders; body: Buffer };

/** A GET through node:http: fetch would add `Accept: *\/*` to a row that sends no Accept header. */
function get(url: string, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers: { ...AS_ADMIN, ...headers } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

type ContentType = { mediaType: string; params: Record<string, string> };

function parseContentType(text: string): ContentType {
  const [head = '', ...rest] = text.split(/;(?=(?:[^"]*"[^"]*")*[^"]*$)/);
  const params: Record<string, string> = {};
  for (const piece of rest) {
    const eq = piece.indexOf('=');
    if (eq < 0) continue;
    params[piece.slice(0, eq).trim().toLowerCase()] = piece.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1').toLowerCase();
  }
  return { mediaType: head.trim().toLowerCase(), params };
}

/** As the document says: boundary left out, charset checked only when the row names it, any other parameter must be named. */
function expectContentType(actual: string | undefined, expected: string, what: string): void {
  const want = parseContentType(expected);
  const got = parseContentType(actual ?? '');
  for (const name of ['boundary', ...('charset' in want.params ? [] : ['charset'])]) delete got.params[name];
  expect(got, `${what}: ${actual}`).toEqual(want);
}

describe('docs/conformance.md', () => {
  it('has the checked tables, in the columns this test reads', () => {
    expect(mediaRows.length).toBeGreaterThan(50);
    expect(qidoRows.length).toBeGreaterThan(20);
    expect(stowRows.length).toBeGreaterThan(5);
  });

  describe('media types', () => {
    it.each(mediaRows.map((row) => [`${row['Resource']} of ${row['Instance']}, Accept ${row['Accept'] ?? '(none)'}`, row] as const))(
      '%s',
      async (_name, row) => {
        const url = server.url + expand(row['Resource']!, row['Instance']);
        const answer = await get(url, row['Accept'] ? { Accept: row['Accept'] } : {});
        expect(answer.status, answer.body.subarray(0, 400).toString()).toBe(Number(row['Status']));
        expectContentType(answer.headers['content-type'], row['Content-Type']!, 'Content-Type');
        if (row['First part']) {
          const parts = await readMultipartResponse(new Response(new Uint8Array(answer.body), { headers: { 'content-type': answer.headers['content-type']! } }));
          expect(parts.length).toBeGreaterThan(0);
          expectContentType(parts[0]!.headers['content-type'], row['First part'], 'first part');
        }
      },
    );
  });

  describe('QIDO-RS queries', () => {
    it.each(qidoRows.map((row) => [row['Query']!, row] as const))('%s', async (query, row) => {
      const answer = await get(new URL(query, server.url).href, {});
      expect(answer.status, answer.body.subarray(0, 400).toString()).toBe(Number(row['Status']));
      if (row['Results'] !== undefined) expect((JSON.parse(answer.body.toString()) as unknown[]).length).toBe(Number(row['Results']));
    });
  });

  describe('STOW-RS requests', () => {
    it.each(stowRows.map((row) => [`${row['Resource']} as ${row['Content-Type']}, part ${row['Part Content-Type'] ?? '(none)'}`, row] as const))(
      '%s',
      async (_name, row) => {
        const instance = await fs.readFile(path.join(FIXTURES, 'explicit-le.dcm'));
        // {boundary:N} asks for one N characters long, to find the longest the server takes.
        let boundary = `conformance-${randomUUID()}`;
        const contentType = row['Content-Type']!.replace(/\{boundary(?::(\d+))?\}/, (_whole, length?: string) => {
          if (length) boundary = 'b'.repeat(Number(length));
          return boundary;
        });
        const partHeaders = row['Part Content-Type'] ? `Content-Type: ${row['Part Content-Type']}\r\n` : '';
        const body = Buffer.concat([Buffer.from(`--${boundary}\r\n${partHeaders}\r\n`), instance, Buffer.from(`\r\n--${boundary}--\r\n`)]);
        const response = await adminFetch(server.url + expand(row['Resource']!, 'explicit-le'), {
          method: 'POST',
          headers: { 'Content-Type': contentType, Accept: 'application/dicom+json' },
          body: new Uint8Array(body),
        });
        const text = await response.text();
        expect(response.status, text.slice(0, 400)).toBe(Number(row['Status']));
        if (row['Failure reason']) {
          const failed = (JSON.parse(text) as Record<string, { Value: Array<Record<string, { Value: number[] }>> }>)['00081198'];
          expect(failed?.Value[0]?.['00081197']?.Value[0]).toBe(Number(row['Failure reason']));
        }
      },
    );
  });
});
