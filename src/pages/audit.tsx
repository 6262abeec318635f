import { Hono } from 'hono';
import type { AuditEvent } from '../auth/records.js';
import type { Env, Services } from '../context.js';
import { isValidUid } from '../dicom/uid.js';
import { Tag } from '../dicom/tags.js';
import { ADMIN_NAV } from './admin-nav.js';
import { Layout } from './layout.js';

const PAGE_SIZE = 50;
/** Pages are read by fetching the events up to the page asked: past this many, narrow the filters instead. */
const MAX_EVENTS = 10_000;
/** A patient's studies searched for their events; a patient with more is rare in one clinic's store. */
const MAX_PATIENT_STUDIES = 200;

type Filters = { patient: string; study: string; credential: string; since: string; until: string; page: number };

/** The audit trail, newest first, filtered by patient, study, user or key, and dates, a page at a time. */
export function auditPage(services: Services) {
  const { auth, catalog } = services;
  const router = new Hono<Env>();

  router.get('/audit', async (c) => {
    const q = c.req.query();
    const f: Filters = { patient: q.patient?.trim() ?? '', study: q.study?.trim() ?? '', credential: q.credential?.trim() ?? '', since: q.since ?? '', until: q.until ?? '', page: Math.max(1, Number.parseInt(q.page ?? '1', 10) || 1) };
    const problems: string[] = [];
    if (f.study && !isValidUid(f.study)) problems.push(`"${f.study}" is not a Study Instance UID (digits and dots)`);
    const since = dayStart(f.since, 'From', problems);
    const until = dayStart(f.until, 'To', problems);
    const wanted = Math.min(f.page * PAGE_SIZE + 1, MAX_EVENTS);
    let events: AuditEvent[] = [];
    if (problems.length === 0) {
      const base = { credential: f.credential || undefined, since, until: until === undefined ? undefined : until + 86_400_000 - 1, limit: wanted };
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
        <form class="row" method="get" action="/admin/audit">
          <label>Patient ID<input name="patient" value={f.patient} /></label>
          <label>Study UID<input name="study" value={f.study} /></label>
          <label>User or key<input name="credential" value={f.credential} placeholder="key:… or user:…" /></label>
          <label>From<input name="since" type="date" value={f.since} /></label>
          <label>To<input name="until" type="date" value={f.until} /></label>
          <button type="submit">Filter</button>
        </form>
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
        <p id="paging">
          {shown.length === 0 ? 'No events match. ' : `Events ${(f.page - 1) * PAGE_SIZE + 1}–${(f.page - 1) * PAGE_SIZE + shown.length}. `}
          {f.page > 1 && <a href={pageLink(f, f.page - 1)} rel="prev">Newer</a>}{' '}
          {more && <a href={pageLink(f, f.page + 1)} rel="next">Older</a>}
        </p>
      </Layout>,
      problems.length > 0 ? 400 : 200,
    );
  });

  return router;
}

/** A date field's day (YYYY-MM-DD, UTC) as the time it begins. */
function dayStart(day: string, label: string, problems: string[]): number | undefined {
  if (!day) return undefined;
  const ms = /^\d{4}-\d{2}-\d{2}$/.test(day) ? Date.parse(`${day}T00:00:00Z`) : Number.NaN;
  if (Number.isNaN(ms)) problems.push(`${label} must be a day such as 2026-11-24`);
  return Number.isNaN(ms) ? undefined : ms;
}

function pageLink(f: Filters, page: number): string {
  const params = new URLSearchParams({ patient: f.patient, study: f.study, credential: f.credential, since: f.since, until: f.until, page: String(page) });
  for (const [name, value] of [...params]) if (!value) params.delete(name);
  return `/admin/audit?${params}`;
}
