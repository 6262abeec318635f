import { Hono } from 'hono';
import type { AuditEvent } from '../auth/records.js';
import type { Env, Services } from '../context.js';
import { Tag } from '../dicom/tags.js';
import { ADMIN_NAV } from './admin-nav.js';
import { Layout } from './layout.js';
import { LogFilterForm, logFiltersOf, Paging } from './log-filters.js';

const PAGE_SIZE = 50;
/** Pages are read by fetching the events up to the page asked: past this many, narrow the filters instead. */
const MAX_EVENTS = 10_000;
/** A patient's studies searched for their events; a patient with more is rare in one clinic's store. */
const MAX_PATIENT_STUDIES = 200;

/** The audit trail, newest first, filtered by patient, study, user or key, and dates, a page at a time. */
export function auditPage(services: Services) {
  const { auth, catalog } = services;
  const router = new Hono<Env>();

  router.get('/audit', async (c) => {
    const { f, since, until, problems } = logFiltersOf(c.req.query());
    const wanted = Math.min(f.page * PAGE_SIZE + 1, MAX_EVENTS);
    let events: AuditEvent[] = [];
    if (problems.length === 0) {
      const base = { credential: f.credential || undefined, since, until, limit: wanted };
      // The trail names studies, not patients: a patient's events are those of the studies stored under their ID.
      const studies = f.patient
        ? (await catalog.studies({ level: 'study', keys: [{ tag: Tag.PatientID, keyword: 'PatientID', value: f.patient }], fuzzy: false, limit: MAX_PATIENT_STUDIES, offset: 0 }))
            .map((s) => s.studyUid)
            .filter((uid) => !f.study || uid === f.study)
        : [f.study || undefined];
      const found = await Promise.all(studies.map((studyUid) => auth.audit.query({ ...base, studyUid })));
      events = found.flat().sort((a, b) => b.at - a.at).slice(0, wanted);
    }
    const shown = events.slice((f.page - 1) * PAGE_SIZE, f.page * PAGE_SIZE);
    const more = events.length > f.page * PAGE_SIZE && f.page * PAGE_SIZE < MAX_EVENTS;
    return c.html(
      <Layout title="Audit trail" nav={ADMIN_NAV} current="/admin/audit">
        {problems.length > 0 && <p class="error">{problems.join('; ')}</p>}
        <LogFilterForm action="/admin/audit" f={f} who="User or key" placeholder="key:… or user:…" />
        <div class="scroll">
          <table id="audit">
            <thead>
              <tr><th>When (UTC)</th><th>Who</th><th>From</th><th>Request</th><th>Study</th><th>Status</th></tr>
            </thead>
            <tbody>
              {shown.map((e) => (
                <tr>
                  <td>{new Date(e.at).toISOString().replace('T', ' ').slice(0, 19)}</td>
                  <td>{e.credential}</td>
                  <td>{e.ip}</td>
                  <td>{e.method} {e.path}{e.query ? `?${e.query}` : ''}</td>
                  <td>{e.studyUid}</td>
                  <td>{e.status}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <Paging path="/admin/audit" f={f} shown={shown.length} pageSize={PAGE_SIZE} more={more} noun="Events" />
      </Layout>,
      problems.length > 0 ? 400 : 200,
    );
  });

  return router;
}
