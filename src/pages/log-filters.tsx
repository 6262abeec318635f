import { isValidUid } from '../dicom/uid.js';

/** The filters of the administrator's logs (the audit trail, the upload log), as the query string gives them. */
export type LogFilters = { patient: string; study: string; credential: string; since: string; until: string; page: number };

/** The filters asked, the time span they name (ms; `until` to the end of its day), and what is wrong with them. */
export function logFiltersOf(q: Record<string, string>): { f: LogFilters; since?: number; until?: number; problems: string[] } {
  const f: LogFilters = { patient: q.patient?.trim() ?? '', study: q.study?.trim() ?? '', credential: q.credential?.trim() ?? '', since: q.since ?? '', until: q.until ?? '', page: Math.max(1, Number.parseInt(q.page ?? '1', 10) || 1) };
  const problems: string[] = [];
  if (f.study && !isValidUid(f.study)) problems.push(`"${f.study}" is not a Study Instance UID (digits and dots)`);
  const since = dayStart(f.since, 'From', problems);
  const until = dayStart(f.until, 'To', problems);
  return { f, since, until: until === undefined ? undefined : until + 86_400_000 - 1, problems };
}

/** The filter form of a log page. */
export function LogFilterForm({ action, f, who, placeholder }: { action: string; f: LogFilters; who: string; placeholder: string }) {
  return (
    <form class="row" method="get" action={action}>
      <label>Patient ID<input name="patient" value={f.patient} /></label>
      <label>Study UID<input name="study" value={f.study} /></label>
      <label>{who}<input name="credential" value={f.credential} placeholder={placeholder} /></label>
      <label>From<input name="since" type="date" value={f.since} /></label>
      <label>To<input name="until" type="date" value={f.until} /></label>
      <button type="submit">Filter</button>
    </form>
  );
}

/** Which entries of a log a page shows, and links to the newer and older pages. */
export function Paging({ path, f, shown, pageSize, more, noun }: { path: string; f: LogFilters; shown: number; pageSize: number; more: boolean; noun: string }) {
  const first = (f.page - 1) * pageSize;
  return (
    <p id="paging">
      {shown === 0 ? `No ${noun.toLowerCase()} match. ` : `${noun} ${first + 1}–${first + shown}. `}
      {f.page > 1 && <a href={pageLink(path, f, f.page - 1)} rel="prev">Newer</a>}{' '}
      {more && <a href={pageLink(path, f, f.page + 1)} rel="next">Older</a>}
    </p>
  );
}

/** The link to another page of a log, with the same filters. */
function pageLink(path: string, f: LogFilters, page: number): string {
  const params = new URLSearchParams({ patient: f.patient, study: f.study, credential: f.credential, since: f.since, until: f.until, page: String(page) });
  for (const [name, value] of [...params]) if (!value) params.delete(name);
  return `${path}?${params}`;
}

/** A date field's day (YYYY-MM-DD, UTC) as the time it begins. */
function dayStart(day: string, label: string, problems: string[]): number | undefined {
  if (!day) return undefined;
  const ms = /^\d{4}-\d{2}-\d{2}$/.test(day) ? Date.parse(`${day}T00:00:00Z`) : Number.NaN;
  if (Number.isNaN(ms)) problems.push(`${label} must be a day such as 2026-11-24`);
  return Number.isNaN(ms) ? undefined : ms;
}
