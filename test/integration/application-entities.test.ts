import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../helpers/cli.js';
import { adminFetch, startServer, type RunningServer } from '../helpers/server.js';

/**
 * The DICOM application entities the clinic knows (DIMSE has no passwords), kept in the index: managed with
 * `npm run cli -- aes` and /api/v1/application-entities, validated alike by both, every change audited.
 */

let server: RunningServer;
const aes = (...args: string[]) => cli(['aes', ...args], server.dataDir, server.backend.env);
const url = (title = '') => `${server.url}/api/v1/application-entities${title ? `/${encodeURIComponent(title)}` : ''}`;
const put = (title: string, body: unknown, init: RequestInit = {}) =>
  adminFetch(url(title), { method: 'PUT', headers: { 'Content-Type': 'application/json', ...init.headers }, body: JSON.stringify(body) });
const listed = async (): Promise<Array<Record<string, unknown>>> => (await adminFetch(url())).json();
const titles = async () => (await listed()).map((ae) => ae.ae_title);
const ALL = { store: true, query: true, retrieve: true };

/** The audit events the credential left (newest first), as the administrator reads them. */
async function auditOf(credential: string): Promise<Array<{ method: string; path: string; query: string | null; status: number }>> {
  const response = await adminFetch(`${server.url}/api/v1/audit?credential=${encodeURIComponent(credential)}`);
  expect(response.status).toBe(200);
  return response.json();
}

beforeAll(async () => {
  server = await startServer();
}, 60_000);
afterAll(() => server?.stop());

describe('application entities on the command line', () => {
  it('adds, lists, replaces (keeping the date it was added) and removes an AE, each change audited under who ran it', async () => {
    const added = await aes('add', '  CT_ROOM1 ', '--store', '--host', '10.1.2.3', '--port', '104', '--description', 'CT in room 1');
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toContain('Added application entity CT_ROOM1: it may store, calling from 10.1.2.3, listening on port 104.');
    const first = (await listed()).find((ae) => ae.ae_title === 'CT_ROOM1');
    expect(first).toMatchObject({ host: '10.1.2.3', port: 104, store: true, query: false, retrieve: false, description: 'CT in room 1' });

    const list = await aes('list');
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^AE TITLE\s+HOST\s+PORT\s+MAY\s+ADDED\s+DESCRIPTION$/m);
    expect(list.stdout).toMatch(/^CT_ROOM1\s+10\.1\.2\.3\s+104\s+store\s+\d{4}-\d{2}-\d{2} \d{2}:\d{2}\s+CT in room 1$/m);

    const replaced = await aes('add', 'CT_ROOM1', '--query', '--retrieve');
    expect(replaced.code, replaced.stderr).toBe(0);
    expect(replaced.stdout).toContain('Replaced application entity CT_ROOM1: it may query,retrieve, calling from any address.');
    expect((await listed()).find((ae) => ae.ae_title === 'CT_ROOM1')).toEqual({ ...first, host: null, port: null, store: false, query: true, retrieve: true, description: null });

    // AE titles are case-sensitive: ct_room1 is another one, and none is known by that title.
    const wrongCase = await aes('remove', 'ct_room1');
    expect(wrongCase.code).toBe(1);
    expect(wrongCase.stderr).toContain('No application entity has the AE title "ct_room1"');
    const removed = await aes('remove', 'CT_ROOM1');
    expect(removed.code, removed.stderr).toBe(0);
    expect(await titles()).not.toContain('CT_ROOM1');
    expect((await aes('remove', 'CT_ROOM1')).code).toBe(1);

    const trail = await auditOf(`cli:${os.userInfo().username}`);
    expect(trail.filter((e) => e.path.startsWith('aes ')).map((e) => [e.method, e.path, e.query])).toEqual([
      ['CLI', 'aes remove', 'ae=CT_ROOM1'],
      ['CLI', 'aes add', 'ae=CT_ROOM1&may=query%2Cretrieve&host=&port='],
      ['CLI', 'aes add', 'ae=CT_ROOM1&may=store&host=10.1.2.3&port=104'],
    ]);
  });

  it('refuses wrong input with exit code 2 and a line saying why, storing nothing', async () => {
    const refusals: Array<[string[], RegExp]> = [
      [['add', 'BARE'], /needs at least one of --store, --query, --retrieve/],
      [['add', 'A'.repeat(17), '--store'], /an AE title is 1 to 16 characters.*has 17/],
      [['add', 'CT\\1', '--store'], /without "\\"/],
      [['add', 'TAB\tIN', '--store'], /control characters/],
      [['add', '   ', '--store'], /an AE title is 1 to 16 characters/],
      [['add', 'PORT0', '--store', '--port', '0'], /a port is a whole number from 1 to 65535/],
      [['add', 'PORT70000', '--store', '--port', '70000'], /a port is a whole number from 1 to 65535/],
      [['add', 'PORTX', '--store', '--port', '10x'], /a port is a whole number from 1 to 65535/],
      [['add', 'BADHOST', '--store', '--host', 'ct_1.clinic'], /a host is a host name/],
      [['add', 'BADIP', '--store', '--host', '10.0.0.300'], /a host is a host name/],
      [['add', 'NOFLAG', '--store', '--write'], /Unknown option '--write'/],
      [['add', 'TWO', 'TITLES', '--store'], /name one AE title/],
      [['add', '--store'], /name one AE title/],
      [['list', 'extra'], /unexpected argument: extra/],
      [['frobnicate'], /unknown command: aes frobnicate/],
      [[], /aes needs a subcommand/],
    ];
    for (const [args, reason] of refusals) {
      const result = await aes(...args);
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(2);
      expect(result.stderr).toMatch(reason);
      expect(result.stderr).not.toMatch(/\n\s+at /);
    }
    expect(await titles()).toEqual([]);
    // The usage is printed with a wrong command, and in `help`.
    expect((await aes('frobnicate')).stderr).toContain('aes add <AE_TITLE>');
    expect((await cli(['help'], server.dataDir, server.backend.env)).stdout).toContain('aes remove <AE_TITLE>');
  });

  it('accepts a host name, an IPv6 address and spaces inside an AE title', async () => {
    for (const [title, host] of [['MR 3T', 'mr3t.clinic.local'], ['PACS_OLD', 'fd00::17']]) {
      const result = await aes('add', title!, '--store', '--query', '--host', host!);
      expect(result.code, result.stderr).toBe(0);
    }
    expect(await listed()).toEqual([
      expect.objectContaining({ ae_title: 'MR 3T', host: 'mr3t.clinic.local' }),
      expect.objectContaining({ ae_title: 'PACS_OLD', host: 'fd00::17' }),
    ]);
    for (const title of ['MR 3T', 'PACS_OLD']) expect((await aes('remove', title)).code).toBe(0);
  });
});

describe('application entities over the admin API', () => {
  it('creates (201), replaces (200, keeping created_at), reads, lists by AE title and deletes (204), each request audited', async () => {
    const created = await put('WORKSTATION', { ...ALL, host: 'ws1.clinic.local', port: 11112, description: 'reading room' });
    const body = await created.json();
    expect(created.status, JSON.stringify(body)).toBe(201);
    expect(body).toEqual({ ae_title: 'WORKSTATION', host: 'ws1.clinic.local', port: 11112, ...ALL, description: 'reading room', created_at: expect.any(String) });

    const replaced = await put(' WORKSTATION ', { store: false, query: true, retrieve: true });
    expect(replaced.status).toBe(200);
    expect(await replaced.json()).toEqual({ ...body, host: null, port: null, store: false, description: null });
    expect(await (await adminFetch(url('WORKSTATION'))).json()).toEqual({ ...body, host: null, port: null, store: false, description: null });

    // Sorted byte by byte on every backend: capitals before small letters.
    expect((await put('archive', { ...ALL })).status).toBe(201);
    expect((await put('Zeta', { store: false, query: false, retrieve: false })).status).toBe(201);
    expect(await titles()).toEqual(['WORKSTATION', 'Zeta', 'archive']);

    for (const title of ['WORKSTATION', 'Zeta', 'archive']) expect((await adminFetch(url(title), { method: 'DELETE' })).status).toBe(204);
    const again = await adminFetch(url('WORKSTATION'), { method: 'DELETE' });
    expect(again.status).toBe(404);
    expect(await again.json()).toEqual({ error: 'not-found', detail: 'no application entity has that AE title (AE titles are case-sensitive)' });
    expect((await adminFetch(url('WORKSTATION'))).status).toBe(404);
    expect(await titles()).toEqual([]);

    const trail: Array<{ method: string; path: string; status: number; credential: string }> = await (await adminFetch(`${server.url}/api/v1/audit`)).json();
    const changes = trail.filter((e) => e.path.startsWith('/api/v1/application-entities/') && e.method !== 'GET');
    expect(new Set(changes.map((e) => e.credential)).size).toBe(1);
    expect(changes[0]!.credential).toMatch(/^key:/);
    expect(changes.map((e) => [e.method, e.path, e.status])).toEqual([
      ['DELETE', '/api/v1/application-entities/WORKSTATION', 404],
      ['DELETE', '/api/v1/application-entities/archive', 204],
      ['DELETE', '/api/v1/application-entities/Zeta', 204],
      ['DELETE', '/api/v1/application-entities/WORKSTATION', 204],
      ['PUT', '/api/v1/application-entities/Zeta', 201],
      ['PUT', '/api/v1/application-entities/archive', 201],
      ['PUT', '/api/v1/application-entities/ WORKSTATION ', 200],
      ['PUT', '/api/v1/application-entities/WORKSTATION', 201],
    ]);
  });

  it('refuses a wrong AE title, host, port or field with 400 saying which, storing nothing', async () => {
    const refusals: Array<[string, unknown, RegExp]> = [
      ['A'.repeat(17), ALL, /an AE title is 1 to 16 characters.*has 17/],
      ['CT\\1', ALL, /without "\\"/],
      ['PORT0', { ...ALL, port: 0 }, /a port is a whole number from 1 to 65535/],
      ['PORT70000', { ...ALL, port: 70000 }, /a port is a whole number from 1 to 65535/],
      ['PORTHALF', { ...ALL, port: 104.5 }, /a port is a whole number from 1 to 65535/],
      ['PORTTEXT', { ...ALL, port: '104' }, /port: /],
      ['BADHOST', { ...ALL, host: 'ct 1.clinic' }, /a host is a host name/],
      ['BADHOST', { ...ALL, host: '[::1]' }, /a host is a host name/],
      ['UNKNOWN', { ...ALL, calling: 'x' }, /unknown field "calling"/],
      ['UNSAID', { store: true }, /query: .*; retrieve: /],
    ];
    for (const [title, body, reason] of refusals) {
      const response = await put(title, body);
      const answer = await response.json();
      expect(response.status, `${title}: ${JSON.stringify(answer)}`).toBe(400);
      expect(answer.error).toBe('bad-request');
      expect(answer.detail).toMatch(reason);
    }
    const notJson = await adminFetch(url('NOTJSON'), { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: '{' });
    expect(notJson.status).toBe(400);
    expect(await titles()).toEqual([]);
  });

  it('answers only admins: 403 to another role, 401 without a credential', async () => {
    const made = await adminFetch(`${server.url}/api/v1/keys`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'workstation', role: 'read' }) });
    const { key, id } = await made.json();
    const asReader = { Authorization: `Bearer ${key}` };
    for (const [method, title] of [['GET', ''], ['GET', 'ANY'], ['PUT', 'ANY'], ['DELETE', 'ANY']] as const) {
      const init = { method, headers: { ...asReader, 'Content-Type': 'application/json' }, ...(method === 'PUT' ? { body: JSON.stringify(ALL) } : {}) };
      const response = await fetch(url(title), init);
      expect(response.status, `${method} ${title}`).toBe(403);
      expect(await response.json()).toEqual({ error: 'forbidden', detail: `API key ${id} has the role "read", which may not manage keys, tokens, application entities and the audit trail` });
      expect((await fetch(url(title), { ...init, headers: { 'Content-Type': 'application/json' } })).status).toBe(401);
    }
    expect(await titles()).toEqual([]);
    expect((await auditOf(`key:${id}`)).filter((e) => e.method === 'PUT').map((e) => e.status)).toEqual([403]);
  });

  it('shares one list with the command line', async () => {
    expect((await put('FROM_API', { ...ALL })).status).toBe(201);
    const listed = await aes('list');
    expect(listed.stdout).toMatch(/^FROM_API\s+any\s+-\s+store,query,retrieve\s/m);
    expect((await aes('remove', 'FROM_API')).code).toBe(0);
    expect(await titles()).toEqual([]);
  });
});
