import { Hono } from 'hono';
import { raw } from 'hono/html';
import { authenticate, signInFirst } from '../auth/middleware.js';
import { permits } from '../auth/principal.js';
import type { Env, Services } from '../context.js';
import { Layout } from './layout.js';

/** Files a request carries: small enough that each request's progress shows, within the form routes' limit. */
const FILES_A_REQUEST = 20;

/**
 * The upload page (issue 15) for staff with the upload role: DICOM files or a CD's folder, with the order's values
 * to set on them, and photos and PDFs for a new study; through the same API routes as a script (/api/v1/uploads,
 * /api/v1/photos) with the session, each file's result shown as it comes.
 */
export function uploadPage(services: Services) {
  const router = new Hono<Env>();
  router.use('/upload', signInFirst(services.auth), authenticate(services.auth));
  router.get('/upload', (c) => {
    const principal = c.var.principal;
    if (!principal || !permits(principal, 'upload')) {
      return c.html(
        <Layout title="Not allowed" nav={[{ href: '/logout', label: 'Sign out' }]}>
          <p class="error">Uploading needs the upload role; ask the administrator for it.</p>
        </Layout>,
        403,
      );
    }
    c.header('Cache-Control', 'no-store');
    return c.html(<UploadPage />);
  });
  return router;
}

const field = (name: string, label: string, extra: Record<string, string | number> = {}) => (
  <label>
    {label}
    <input name={name} {...extra} />
  </label>
);

function UploadPage() {
  return (
    <Layout title="Upload" nav={[{ href: '/logout', label: 'Sign out' }]}>
      <h2>DICOM files</h2>
      <form id="dicom" class="row">
        <label>
          Files
          <input type="file" name="files" multiple />
        </label>
        <label>
          or a folder (a CD)
          <input type="file" name="folder" {...{ webkitdirectory: '' }} />
        </label>
        <p class="muted" style="flex-basis:100%;margin:0">
          To match them to the order, give the clinic's values; the values they replace are kept in each file. Leave blank to store them as they are. ZIP archives: unzip them first, or use <code>npm run cli -- import</code>.
        </p>
        {field('patient_id', 'Patient ID', { maxlength: 64 })}
        {field('patient_name', 'Name (Family^Given)', { maxlength: 64 })}
        {field('patient_birth_date', 'Birth date', { type: 'date' })}
        <label>
          Sex
          <select name="patient_sex">
            <option value="">as in the files</option>
            <option>F</option>
            <option>M</option>
            <option>O</option>
          </select>
        </label>
        {field('accession_number', 'Accession number', { maxlength: 16 })}
        {field('study_date', 'Study date', { type: 'date' })}
        {field('reason', 'Why (with any value)', { maxlength: 500 })}
        <button type="submit">Upload</button>
      </form>
      <h2>Photos and documents</h2>
      <form id="photos" class="row">
        <label>
          JPEG, PNG or PDF
          <input type="file" name="files" multiple accept="image/jpeg,image/png,application/pdf" />
        </label>
        {field('patient_id', 'Patient ID', { maxlength: 64, required: 'required' })}
        {field('patient_name', 'Name (Family^Given)', { maxlength: 64 })}
        {field('patient_birth_date', 'Birth date', { type: 'date' })}
        {field('accession_number', 'Accession number', { maxlength: 16 })}
        {field('study_description', 'Description', { maxlength: 64 })}
        {field('body_part', 'Body part', { maxlength: 16 })}
        <button type="submit">Upload</button>
      </form>
      <p id="summary" role="status"></p>
      <div class="scroll">
        <table id="results">
          <thead>
            <tr><th>File</th><th>Progress</th><th>Result</th></tr>
          </thead>
          <tbody></tbody>
        </table>
      </div>
      <script>{raw(SCRIPT)}</script>
    </Layout>
  );
}

/**
 * Sends the files a few at a time, each request's upload progress on its files' rows, each file's answer in its row.
 * A thousand-file CD is a thousand rows added as they go, never a frozen tab. textContent only: names are not HTML.
 */
const SCRIPT = `
const FILES_A_REQUEST = ${FILES_A_REQUEST};
const body = document.querySelector('#results tbody');
const summary = document.getElementById('summary');
function row(name) {
  const tr = body.insertRow();
  for (let i = 0; i < 3; i++) tr.insertCell();
  tr.cells[0].textContent = name;
  tr.cells[1].textContent = 'waiting';
  return tr;
}
function send(url, fields, files, rows) {
  return new Promise((resolve) => {
    const form = new FormData();
    for (const [name, value] of fields) if (value !== '') form.append(name, value);
    files.forEach((f) => form.append('file', f, f.webkitRelativePath || f.name));
    const xhr = new XMLHttpRequest();
    xhr.open('POST', url);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) rows.forEach((r) => (r.cells[1].textContent = Math.round((100 * e.loaded) / e.total) + '%')); };
    xhr.onload = () => {
      let answer = {};
      try { answer = JSON.parse(xhr.responseText); } catch {}
      if (!Array.isArray(answer.files)) {
        const why = answer.detail || answer.error || xhr.statusText || 'no answer';
        rows.forEach((r) => { r.cells[1].textContent = 'done'; r.cells[2].textContent = 'refused: ' + why; r.dataset.status = 'refused'; });
        return resolve();
      }
      answer.files.forEach((f, i) => {
        const r = rows[i];
        r.cells[1].textContent = 'done';
        r.dataset.status = f.status;
        r.cells[2].textContent = f.status === 'refused' ? 'refused: ' + f.reason : f.status + (f.corrected && f.corrected.length ? ' (set: ' + f.corrected.join(', ') + ')' : '');
      });
      resolve();
    };
    xhr.onerror = () => { rows.forEach((r) => { r.cells[2].textContent = 'the connection failed: send these again'; r.dataset.status = 'failed'; }); resolve(); };
    xhr.send(form);
  });
}
function tally() {
  const count = (s) => body.querySelectorAll('tr[data-status="' + s + '"]').length;
  summary.textContent = count('stored') + ' stored, ' + count('already-stored') + ' already stored, ' + (count('refused') + count('failed')) + ' refused or failed';
}
async function upload(form, url, perRequest) {
  const files = [...form.querySelectorAll('input[type=file]')].flatMap((input) => [...input.files]).filter((f) => f.name !== 'DICOMDIR');
  if (files.length === 0) { summary.textContent = 'Choose files first.'; return; }
  const fields = [...new FormData(form)].filter(([, v]) => typeof v === 'string');
  form.querySelector('button').disabled = true;
  summary.textContent = 'Uploading ' + files.length + ' file(s)…';
  for (let i = 0; i < files.length; i += perRequest) {
    const some = files.slice(i, i + perRequest);
    await send(url, fields, some, some.map((f) => row(f.webkitRelativePath || f.name)));
    tally();
  }
  form.querySelector('button').disabled = false;
  summary.textContent = 'Done: ' + summary.textContent;
}
document.getElementById('dicom').addEventListener('submit', (e) => { e.preventDefault(); upload(e.target, '/api/v1/uploads', FILES_A_REQUEST); });
document.getElementById('photos').addEventListener('submit', (e) => { e.preventDefault(); upload(e.target, '/api/v1/photos', 100); });
`;
