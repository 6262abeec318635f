import { Hono, type Context } from 'hono';
import { trashEntryJson } from '../api/trash.js';
import type { TrashEntry } from '../catalog/catalog.js';
import type { Env, Services } from '../context.js';
import { formatBytes } from '../ingest/spool.js';
import { purge, restore } from '../trash/trash.js';
import { ADMIN_NAV } from './admin-nav.js';
import { Layout, PostButton } from './layout.js';

const SHOWN = 200;

/** The trash (issue 15): what was deleted, of whom, why and by whom, restorable whole or purged now. */
export function trashPage(services: Services) {
  const { catalog } = services;
  const router = new Hono<Env>();
  const deps = (c: Context<Env>) => ({ catalog, store: services.store, durable: services.ingest.durable, log: c.var.log });

  const page = async (c: Context<Env>, notice?: { text: string; error?: boolean }, status: 200 | 404 = 200) =>
    c.html(<TrashPage entries={await catalog.trashEntries(SHOWN, 0)} trashDays={services.config.trashMs / 86_400_000} notice={notice} />, status);
  const gone = (c: Context<Env>) => page(c, { text: 'No trash entry has that id: it was restored or purged meanwhile; nothing was changed.', error: true }, 404);

  router.get('/trash', (c) => page(c));

  router.post('/trash/:id/restore', async (c) => {
    const entry = await catalog.trashEntry(c.req.param('id'));
    const result = entry && (await restore(deps(c), entry));
    if (!entry || !result) return gone(c);
    c.set('auditStudyUids', [entry.studyUid]);
    const kept = result.present > 0 ? `; ${result.present} sent again since were kept as they are now` : '';
    return page(c, { text: `Restored ${result.restored} instance${result.restored === 1 ? '' : 's'} of study ${entry.studyUid}${kept}.` });
  });

  router.post('/trash/:id/purge', async (c) => {
    const entry = await catalog.trashEntry(c.req.param('id'));
    if (!entry) return gone(c);
    c.set('auditStudyUids', [entry.studyUid]);
    await purge(deps(c), entry);
    return page(c, { text: `Purged the deletion of ${entry.instances} instance${entry.instances === 1 ? '' : 's'} of study ${entry.studyUid}: its files are gone for good.` });
  });

  return router;
}

function TrashPage(props: { entries: TrashEntry[]; trashDays: number; notice?: { text: string; error?: boolean } }) {
  const time = (iso: string) => iso.replace('T', ' ').slice(0, 16);
  return (
    <Layout title="Trash" nav={ADMIN_NAV} current="/admin/trash">
      {props.notice && (
        <p class={props.notice.error ? 'error' : 'notice'} role={props.notice.error ? 'alert' : 'status'}>
          {props.notice.text}
        </p>
      )}
      <p>
        {props.trashDays > 0
          ? `Deleted studies, series and instances stay here ${props.trashDays} days (PACS_TRASH_DAYS), hidden from every query and viewer, then their files are deleted for good.`
          : 'PACS_TRASH_DAYS is 0: deletes are final at once, and nothing comes here.'}
      </p>
      <div class="scroll">
        <table id="trash">
          <thead>
            <tr><th>Deleted (UTC)</th><th>What</th><th>Patient</th><th>Study</th><th>Instances</th><th>Size</th><th>Why</th><th>By</th><th>Purged after (UTC)</th><th></th></tr>
          </thead>
          <tbody>
            {props.entries.map(trashEntryJson).map((e) => (
              <tr data-trash-id={e.id} data-study-uid={e.study_uid}>
                <td>{time(e.deleted_at)}</td>
                <td>{e.level}</td>
                <td>
                  {e.patient_name ?? ''} {e.patient_id && <code>{e.patient_id}</code>}
                </td>
                <td>
                  {[e.study_date, e.study_description].filter(Boolean).join(' ')} <code>{e.study_uid}</code>
                </td>
                <td>{e.instances}</td>
                <td>{formatBytes(e.bytes)}</td>
                <td class="reason">{e.reason}</td>
                <td>{e.deleted_by}</td>
                <td>{time(e.purge_after)}</td>
                <td>
                  <PostButton action={`/admin/trash/${encodeURIComponent(e.id)}/restore`} label="Restore" />
                  <PostButton action={`/admin/trash/${encodeURIComponent(e.id)}/purge`} label="Purge now" danger />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </Layout>
  );
}
