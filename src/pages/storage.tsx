import { Hono } from 'hono';
import type { Env, Services } from '../context.js';
import { formatBytes } from '../ingest/spool.js';
import { integrityStatus } from '../integrity/schedule.js';
import { diskSpace } from '../storage/disk-space.js';
import { ADMIN_NAV } from './admin-nav.js';
import { Layout } from './layout.js';

/** What the store holds, the room left, and what the last verify pass found. */
export function storagePage(services: Services) {
  const { catalog, config } = services;
  const router = new Hono<Env>();
  router.get('/storage', async (c) => {
    const [totals, space, integrity, damaged] = await Promise.all([
      catalog.objectTotals(),
      diskSpace(config.storageDir, config.minFreeBytes).catch((e: Error) => e),
      integrityStatus(services, config.verifyInterval),
      catalog.damaged(0),
    ]);
    const last = integrity.lastPass;
    return c.html(
      <Layout title="Storage" nav={ADMIN_NAV} current="/admin/storage">
        <dl id="storage">
          <dt>Instances</dt>
          <dd data-figure="instances">{totals.instances.toLocaleString('en')}</dd>
          <dt>Stored bytes</dt>
          <dd data-figure="bytes">{formatBytes(totals.bytes)}</dd>
          <dt>Free disk space</dt>
          <dd data-figure="free">
            {space instanceof Error ? `unknown: ${space.message}` : `${formatBytes(space.freeBytes)}${space.low ? ` — LOW, uploads are refused below ${formatBytes(space.minFreeBytes)}` : ''}`}
          </dd>
          <dt>Objects in</dt>
          <dd>{config.s3 ? `S3 bucket ${config.s3.bucket}` : config.storageDir}</dd>
          <dt>Last verify</dt>
          <dd data-figure="verify">
            {last ? `${last.finishedAt}: ${last.checked} checked, ${last.missing} missing, ${last.changed} changed` : config.verifyInterval ? 'none finished yet' : 'off (PACS_VERIFY_INTERVAL=0)'}
          </dd>
          {integrity.running && (
            <>
              <dt>Verify under way</dt>
              <dd>
                {integrity.running.checked} of {integrity.running.total} since {integrity.running.startedAt}
              </dd>
            </>
          )}
          <dt>Damaged instances</dt>
          <dd data-figure="damaged">
            {damaged.counts.missing} missing, {damaged.counts.changed} changed
          </dd>
        </dl>
        <p class="muted">Run <code>npm run cli -- verify</code> to check every object now; details in GET /api/v1/integrity.</p>
      </Layout>,
    );
  });
  return router;
}
