import type { Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { setTimeout as delay } from 'node:timers/promises';
import { serve } from '@hono/node-server';
import { createApp } from './app.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { redirectServer, tlsFiles, TlsFilesError } from './https.js';
import { createLogger } from './logger.js';
import type { Services } from './context.js';
import { startDicomListener } from './dimse/listener.js';
import { openServices } from './services.js';

const HEADERS_TIMEOUT_MS = 60_000;
const KEEP_ALIVE_MS = 65_000;

async function main() {
  let config;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(e.message);
      process.exit(2);
    }
    throw e;
  }
  const log = createLogger(config.logLevel);
  // A store or index that cannot be used stops the start with what failed, not a stack trace.
  const services = await openServices(config, log).catch((e: unknown) => {
    log.debug({ err: e }, 'start failed');
    console.error(`cannot start: ${(e as Error).message}`);
    process.exit(1);
  });
  await warnAboutAccess(services);
  const app = createApp(services);
  // Uploads of large studies are slow clients, not hung ones: no limit on a request's whole length (Node's default
  // cuts any request at 300 s with 408), but headers must come within a minute (slowloris).
  const timeouts = { requestTimeout: 0, headersTimeout: HEADERS_TIMEOUT_MS };
  const tls = config.tls && tlsOrExit(config.tls);
  const server = serve(
    {
      fetch: app.fetch,
      port: config.port,
      hostname: config.host,
      ...(tls ? { createServer: createHttpsServer, serverOptions: { ...timeouts, ...tls } } : { serverOptions: timeouts }),
    },
    (info) => {
      log.info({ port: info.port, host: config.host, https: !!tls, storage: config.storageDir }, 'listening');
    },
  );
  const redirect = config.tls?.redirectPort
    ? redirectServer(config.port, config.publicUrl).listen(config.tls.redirectPort, config.host, () => log.info({ port: config.tls?.redirectPort }, 'plain HTTP redirects to HTTPS'))
    : undefined;
  // The DICOM network service listens beside HTTP; a port it cannot have stops the start, saying which.
  const dicom = config.dicom
    ? await startDicomListener(services, config.dicom, config.host).catch((e: NodeJS.ErrnoException) => {
        const why = e instanceof TlsFilesError ? e.message : `a DICOM port cannot be listened on (${e.code ?? e.message}); set PACS_DICOM_PORT (and PACS_DICOM_TLS_PORT) to a free port, or PACS_DICOM_PORT to 0 to turn the DICOM network service off`;
        console.error(`cannot start: ${why}`);
        process.exit(1);
      })
    : undefined;
  services.verifySchedule.start();
  services.studyEvents.start();
  services.trashPurge.start();
  // A connection silent both ways this long is hung: closed (with its upload, which keeps nothing).
  server.setTimeout(config.idleTimeoutSeconds * 1000);
  // Node closes an idle kept-alive connection after 5 s, racing a client (or a reverse proxy: nginx and load balancers
  // keep theirs about 60 s) that sends its next request on it at that moment, which then fails without an answer.
  // Longer than theirs: they close first, never we under a request.
  (server as Server).keepAliveTimeout = KEEP_ALIVE_MS;

  const shutdown = (signal: string) => {
    log.info({ signal }, 'shutting down');
    redirect?.close();
    const associationsClosed = dicom?.close();
    server.close(async () => {
      // The associations' upload records reach the upload log before it closes.
      await associationsClosed;
      await services.close();
      process.exit(0);
    });
    // Requests that do not end within 10 s are cut, but what the audit trail and the upload log hold is written first.
    setTimeout(() => {
      const written = Promise.all([services.auth.audit.flush(), services.uploads.flush()]);
      void Promise.race([written, delay(2000)]).finally(() => process.exit(0));
    }, 10_000).unref();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

function tlsOrExit(tls: NonNullable<Config['tls']>) {
  try {
    return tlsFiles(tls);
  } catch (e) {
    if (!(e instanceof TlsFilesError)) throw e;
    console.error(`cannot start: ${e.message}`);
    process.exit(2);
  }
}

/** An open server is the operator's explicit choice, and said loudly; a server nobody can use is said too. */
async function warnAboutAccess({ config, auth, log }: Services) {
  if (config.anonymousRead) {
    log.warn(
      '*** PACS_ANONYMOUS_READ=true: anyone who can reach this server can read every study without a credential. Use it only on a trusted LAN. ***',
    );
  }
  const usable = (await auth.keys.list()).some((k) => k.revokedAt === null && (k.expiresAt === null || k.expiresAt > Date.now()));
  if (!usable) {
    log.warn('no API key is usable yet: set PACS_ADMIN_KEY, or create one with `npm run cli -- keys create --role admin --name <who>`');
  }
  // An empty store: nobody can sign in or manage anything yet, so the first admin is made from a one-time link.
  if (!usable && (await auth.users.count()) === 0) {
    const base = config.publicUrl ?? `${config.tls ? 'https' : 'http'}://localhost:${config.port}`;
    const link = `${base}/setup?code=${auth.setup.issue(SETUP_LINK_MS)}`;
    log.warn({ link }, 'no users and no admin key yet: open this one-time link within an hour to make the first administrator (a restart prints a new one)');
    console.log(`\n  Make the first administrator (once, within an hour): ${link}\n`);
  }
}

const SETUP_LINK_MS = 3600_000;

await main();
