import { Hono } from 'hono';
import type { LoggedUpload } from '../catalog/catalog.js';
import type { Env, Services } from '../context.js';
import { ADMIN_NAV } from './admin-nav.js';
import { Layout } from './layout.js';
import { LogFilterForm, logFiltersOf, Paging } from './log-filters.js';

const PAGE_SIZE = 50;

/** The upload log (issue 15), newest first, filtered by patient, study, who and dates, a page at a time. */
export function uploadsPage({ uploads: log }: Services) {
  const router = new Hono<Env>();

  router.get('/uploads', async (c) => {
    const { f, since, until, problems } = logFiltersOf(c.req.query());
    let uploads: LoggedUpload[] = [];
    if (problems.length === 0) {
      uploads = await log.uploads({
        patientId: f.patient || undefined,
        studyUid: f.study || undefined,
        credential: f.credential || undefined,
        since,
        until,
        // One more than a page: whether there is an older page.
        limit: PAGE_SIZE + 1,
        offset: (f.page - 1) * PAGE_SIZE,
      });
    }
    const shown = uploads.slice(0, PAGE_SIZE);
    return c.html(
      <Layout title="Uploads" nav={ADMIN_NAV} current="/admin/uploads">
        {problems.length > 0 && <p class="error">{problems.join('; ')}</p>}
        <LogFilterForm action="/admin/uploads" f={f} who="Who" placeholder="key:…, user:…, ae:…, cli:…" />
        <div class="scroll">
          <table id="uploads">
            <thead>
              <tr><th>When (UTC)</th><th>How</th><th>Who</th><th>From</th><th>Stored</th><th>Already stored</th><th>Refused</th><th>Patients</th><th>Studies</th></tr>
            </thead>
            <tbody>
              {shown.map((u) => (
                <tr>
                  <td>{new Date(u.at).toISOString().replace('T', ' ').slice(0, 19)}</td>
                  <td>{DOORS[u.door]}</td>
                  <td>{u.credential}</td>
                  <td>{u.ip}</td>
                  <td>{u.stored}</td>
                  <td>{u.present}</td>
                  <td>
                    {u.refused}
                    {u.refusals.length > 0 && <ul>{u.refusals.slice(0, 5).map((r) => <li>{r.sopInstanceUid ?? 'unreadable'}: {r.reason}</li>)}</ul>}
                  </td>
                  <td>{u.patientIds.join(', ')}</td>
                  <td>
                    {u.studyUids.map((uid, i) => (
                      <>
                        {i > 0 && ', '}
                        <a href={`/api/v1/studies/${encodeURIComponent(uid)}/download`} title="Download the study as a ZIP">{uid}</a>
                      </>
                    ))}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <Paging path="/admin/uploads" f={f} shown={shown.length} pageSize={PAGE_SIZE} more={uploads.length > PAGE_SIZE} noun="Uploads" />
      </Layout>,
      problems.length > 0 ? 400 : 200,
    );
  });

  return router;
}

const DOORS: Record<LoggedUpload['door'], string> = { stow: 'STOW-RS', import: 'import', dicom: 'DICOM network', photos: 'photos and documents', form: 'upload form' };
