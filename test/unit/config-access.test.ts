import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { TEST_ADMIN_KEY } from '../helpers/server.js';

/** Settings of who may reach the server (issue 10): a guessable admin key and a bad proxy list stop the start. */

const adminKeyProblem = (key: string) => {
  try {
    loadConfig({ PACS_ADMIN_KEY: key });
    return undefined;
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
};

describe('PACS_ADMIN_KEY', () => {
  it.each([
    ['one letter repeated', 'aaaaaaaaaaaaaaaaaaaaaaaa'],
    ['one letter repeated, longer', 'a'.repeat(200)],
    ['the old test key, a word and a run', 'test-admin-key-0123456789abcdef'],
    ['runs of the alphabet', 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'],
    ['two letters alternating', 'abababababababababababababababababab'],
  ])('is refused at start when it is %s, without the key in the message', (_, key) => {
    const message = adminKeyProblem(key);
    expect(message).toMatch(/PACS_ADMIN_KEY=\(hidden\): too easy to guess \(under 128 bits/);
    expect(message).not.toContain(key);
  });

  it('is accepted as `openssl rand -base64 32` and `openssl rand -hex 32` make it, every time', () => {
    for (let i = 0; i < 40; i++) {
      for (const format of ['-base64', '-hex']) {
        const key = execFileSync('openssl', ['rand', format, '32']).toString().trim();
        expect(adminKeyProblem(key), `${format}: ${key}`).toBeUndefined();
      }
    }
    expect(adminKeyProblem(TEST_ADMIN_KEY)).toBeUndefined();
  });
});

describe('PACS_TRUSTED_PROXIES', () => {
  it('trusts nobody unless told', () => {
    expect(loadConfig({}).trustedProxies).toEqual([]);
  });

  it('takes addresses and CIDR ranges of both families', () => {
    expect(loadConfig({ PACS_TRUSTED_PROXIES: '127.0.0.1, 10.0.0.0/8,::1,fd00::/8' }).trustedProxies).toEqual(['127.0.0.1', '10.0.0.0/8', '::1', 'fd00::/8']);
  });

  it.each(['localhost', '10.0.0.0/33', '::1/129', '10.0.0.1/8/8', '300.1.1.1'])('refuses %j', (entry) => {
    expect(() => loadConfig({ PACS_TRUSTED_PROXIES: entry })).toThrow(/PACS_TRUSTED_PROXIES=.*IP addresses and CIDR ranges/);
  });
});
