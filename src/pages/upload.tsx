import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import { Hono } from 'hono';
import { raw } from 'hono/html';
import { authenticate, signInFirst } from '../auth/middleware.js';
import { permits } from '../auth/principal.js';
import type { Env, Services } from '../context.js';
import { BUNDLE_PART_BYTES, bundleLimits, CHUNK_BYTES } from '../api/resumable.js';
import { Layout } from './layout.js';

const TUS_CLIENT = '/assets/tus.min.js';
let tusClient: Buffer | undefined;
/** Files uploading at once: enough to keep the link busy between one file's end and the next's start. */
const PARALLEL_UPLOADS = 3;

/**
 * The upload page (issue 15) for staff with the upload role: DICOM files or a CD's folder, with the order's values
 * to set on them, uploaded resumably (tus, /api/v1/resumable: a dropped connection or a closed lid goes on from
 * where it stopped), and photos and PDFs for a new study (/api/v1/photos); the API routes a script uses, with the
 * session, each file's result shown as it comes.
 */
export function uploadPage(services: Services) {
  const router = new Hono<Env>();
  // The tus client, served from our own origin (no CDN): the browser build of the package the page uses.
  router.get(TUS_CLIENT, async (c) => {
    tusClient ??= await fs.readFile(createRequire(import.meta.url).resolve('tus-js-client/dist/tus.min.js'));
    c.header('Cache-Control', 'public, max-age=86400');
    return c.body(new Uint8Array(tusClient), 200, { 'Content-Type': 'text/javascript; charset=utf-8' });
  });
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
    return c.html(<UploadPage bundle={bundleLimits(services.config)} />);
  });
  return router;
}

const field = (name: string, label: string, extra: Record<string, string | number> = {}) => (
  <label>
    {label}
    <input name={name} {...extra} />
  </label>
);

/** PatientSex as DICOM spells it; `blank` says what no choice means. */
const SexField = ({ blank }: { blank: string }) => (
  <label>
    Sex
    <select name="patient_sex">
      <option value="">{blank}</option>
      <option>F</option>
      <option>M</option>
      <option>O</option>
    </select>
  </label>
);

function UploadPage({ bundle }: { bundle: { files: number; bytes: number } }) {
  return (
    <Layout title="Upload" nav={[{ href: '/logout', label: 'Sign out' }]}>
      <h2>DICOM files</h2>
      <form id="dicom" class="row" data-bundle-files={bundle.files} data-bundle-bytes={bundle.bytes}>
        <div id="drop" style="flex-basis:100%;border:2px dashed #999;padding:1em;text-align:center">
          Drop files, a folder (a CD) or ZIP archives here, or choose them:
        </div>
        <label>
          Files or ZIP archives
          <input type="file" name="files" multiple />
        </label>
        <label>
          or a folder (a CD)
          <input type="file" name="folder" {...{ webkitdirectory: '' }} />
        </label>
        <p class="muted" style="flex-basis:100%;margin:0">
          To match them to the order, give the clinic's values; the values they replace are kept in each file. Leave blank to store them as they are.
        </p>
        {field('patient_id', 'Patient ID', { maxlength: 64 })}
        {field('patient_name', 'Name (Family^Given)', { maxlength: 64 })}
        {field('patient_birth_date', 'Birth date', { type: 'date' })}
        <SexField blank="as in the files" />
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
        <p id="joining" class="muted" style="flex-basis:100%;margin:0" hidden>
          Adding to the stored study <span></span> (its patient and order). <a href="#" id="new-study">A new study instead</a>
        </p>
        <fieldset id="new-study-fields" class="row" style="border:0;padding:0;margin:0">
          {field('patient_id', 'Patient ID', { maxlength: 64, required: 'required' })}
          {field('patient_name', 'Name (Family^Given)', { maxlength: 64 })}
          {field('patient_birth_date', 'Birth date', { type: 'date' })}
          <SexField blank="not given" />
          {field('accession_number', 'Accession number', { maxlength: 16 })}
          {field('study_date', 'Study date', { type: 'date' })}
          {field('study_description', 'Description', { maxlength: 64 })}
        </fieldset>
        {field('series_description', 'What they show', { maxlength: 64 })}
        {field('body_part', 'Body part', { maxlength: 16 })}
        <button type="submit">Upload</button>
      </form>
      <h2>Stored studies</h2>
      <form id="search" class="row">
        {field('q', 'Patient ID or family name', { maxlength: 64, required: 'required' })}
        <button type="submit">Search</button>
      </form>
      <p id="found" class="muted" role="status"></p>
      <div class="scroll">
        <table id="studies" hidden>
          <thead>
            <tr><th>Date</th><th>Patient</th><th>Description</th><th>Accession</th><th>Modalities</th><th></th></tr>
          </thead>
          <tbody></tbody>
        </table>
      </div>
      <p id="summary" role="status"></p>
      <div class="scroll">
        <table id="results">
          <thead>
            <tr><th>File</th><th>Progress</th><th>Result</th></tr>
          </thead>
          <tbody></tbody>
        </table>
      </div>
      <script src={TUS_CLIENT}></script>
      <script>{raw(SCRIPT)}</script>
    </Layout>
  );
}

/**
 * DICOM files each a resumable upload, a few at once, each row with its progress and then its answer; photos in one
 * form request. A thousand-file CD is a thousand rows added as they go, never a frozen tab. textContent only: names
 * are not HTML.
 */
const SCRIPT = `
const body = document.querySelector('#results tbody');
const summary = document.getElementById('summary');
// A dropped folder's files carry their path here; chosen ones in webkitRelativePath.
const droppedPaths = new WeakMap();
const nameOf = (f) => droppedPaths.get(f) || f.webkitRelativePath || f.name;
const isArchive = (f) => /\.zip$/i.test(f.name) || /zip/.test(f.type);
function row(name) {
  const tr = body.insertRow();
  for (let i = 0; i < 3; i++) tr.insertCell();
  tr.cells[0].textContent = name;
  tr.cells[1].textContent = 'waiting';
  return tr;
}
function show(r, f) {
  r.cells[1].textContent = 'done';
  r.dataset.status = f.status;
  r.cells[2].textContent = f.status === 'refused' ? 'refused: ' + f.reason : f.status + (f.corrected && f.corrected.length ? ' (set: ' + f.corrected.join(', ') + ')' : '');
}
function refuse(r, why) {
  r.cells[1].textContent = 'done';
  r.dataset.status = 'refused';
  r.cells[2].textContent = 'refused: ' + why;
}
function detailOf(text, fallback) {
  try { const a = JSON.parse(text); return a.detail || a.error || fallback; } catch { return text || fallback; }
}
function tally() {
  const count = (s) => body.querySelectorAll('tr[data-status="' + s + '"]').length;
  summary.textContent = count('stored') + ' stored, ' + count('already-stored') + ' already stored, ' + count('refused') + ' refused';
}
function bundleOf(files, boundary) {
  const parts = files.flatMap((f) => ['--' + boundary + '\\r\\nContent-Type: application/dicom\\r\\n\\r\\n', f, '\\r\\n']);
  return new Blob([...parts, '--' + boundary + '--\\r\\n']);
}
// Small files go together, a bundle an upload (one request, one commit), within what the server takes; a larger file alone.
function jobsOf(files) {
  const limits = document.getElementById('dicom').dataset;
  const [most, room] = [Number(limits.bundleFiles), Number(limits.bundleBytes)];
  const jobs = [];
  let current = null;
  for (const f of files) {
    const r = row(nameOf(f));
    if (isArchive(f)) { jobs.push({ files: [f], rows: [r], archive: true }); continue; }
    if (f.size + ${BUNDLE_PART_BYTES} > room || most < 2) { jobs.push({ files: [f], rows: [r] }); continue; }
    if (!current || current.files.length === most || current.bytes + f.size + ${BUNDLE_PART_BYTES} > room) jobs.push((current = { files: [], rows: [], bytes: 0 }));
    current.files.push(f);
    current.rows.push(r);
    current.bytes += f.size + ${BUNDLE_PART_BYTES};
  }
  return jobs;
}
function resumable(job, fields) {
  return new Promise((resolve) => {
    const names = job.files.map(nameOf);
    const bundle = job.files.length > 1;
    const boundary = 'pacs-lite-' + Math.random().toString(36).slice(2);
    const upload = new tus.Upload(bundle ? bundleOf(job.files, boundary) : job.files[0], {
      endpoint: '/api/v1/resumable',
      chunkSize: ${CHUNK_BYTES},
      // Up to a chunk, a file or a bundle goes whole in the request that creates its upload: stored as it arrives.
      uploadDataDuringCreation: true,
      retryDelays: [0, 1000, 3000, 5000, 10000, 30000],
      removeFingerprintOnSuccess: true,
      // A bundle is sent in one request, whole or again from its start: nothing of it to resume later.
      storeFingerprintForResuming: !bundle,
      metadata: bundle
        ? { filetype: 'multipart/related; type="application/dicom"; boundary=' + boundary, filenames: JSON.stringify(names), fields: JSON.stringify(fields) }
        : job.archive ? { filename: names[0], filetype: 'application/zip', fields: JSON.stringify(fields) } : { filename: names[0], fields: JSON.stringify(fields) },
      // The same file with other values is another upload.
      fingerprint: async () => ['pacs-lite', names[0], job.files[0].size, job.files[0].lastModified, JSON.stringify(fields)].join('|'),
      onProgress: (sent, total) => { job.rows.forEach((r) => { r.cells[1].textContent = Math.round((100 * sent) / total) + '%'; }); },
      onSuccess: (payload) => {
        const answer = JSON.parse(payload.lastResponse.getBody());
        if (job.archive) { unpacked(job.rows[0], answer); resolve(); return; }
        const results = (bundle ? answer.files : [answer]) || [];
        job.rows.forEach((r, i) => (results[i] ? show(r, results[i]) : refuse(r, 'the server gave no result for this file')));
        resolve();
      },
      onError: (err) => {
        const response = err.originalResponse;
        const why = response ? detailOf(response.getBody(), 'the server refused it') : bundle ? 'the connection failed: choose the files again to send them' : 'the connection failed: choose the file again to go on from where it stopped';
        job.rows.forEach((r) => refuse(r, why));
        resolve();
      },
    });
    upload.findPreviousUploads().then((previous) => {
      if (previous.length && !bundle) upload.resumeFromPreviousUpload(previous[0]);
      upload.start();
    });
  });
}
// An archive's row says what it held; each file in it gets a row of its own, below it, with its result.
function unpacked(r, answer) {
  const files = answer.files || [];
  r.cells[1].textContent = 'done';
  r.cells[2].textContent = files.length + ' file(s) in it' + (answer.others ? ', and ' + answer.others + ' that are not DICOM, left' : '');
  files.forEach((f, i) => {
    const tr = body.insertRow(r.sectionRowIndex + 1 + i);
    for (let c = 0; c < 3; c++) tr.insertCell();
    tr.cells[0].textContent = f.file;
    show(tr, f);
  });
}
function chosen(form) {
  return [...form.querySelectorAll('input[type=file]')].flatMap((input) => [...input.files]);
}
// The files of what was dropped, folders walked through (a CD's tree).
async function droppedFiles(items) {
  const files = [];
  const walk = async (entry, path) => {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      droppedPaths.set(file, path + entry.name);
      files.push(file);
      return;
    }
    const reader = entry.createReader();
    for (let batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject)); batch.length; batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject))) {
      for (const child of batch) await walk(child, path + entry.name + '/');
    }
  };
  const entries = [...items].filter((i) => i.kind === 'file').map((i) => ({ entry: i.webkitGetAsEntry && i.webkitGetAsEntry(), file: i.getAsFile() }));
  for (const { entry, file } of entries) {
    if (entry) await walk(entry, '');
    else if (file) files.push(file);
  }
  return files;
}
function fieldsOf(form) {
  return [...new FormData(form)].filter(([, v]) => typeof v === 'string' && v !== '');
}
async function run(form, work, picked = chosen(form)) {
  const files = picked.filter((f) => f.name !== 'DICOMDIR');
  if (files.length === 0) { summary.textContent = 'Choose files first.'; return; }
  form.querySelector('button').disabled = true;
  summary.textContent = 'Uploading ' + files.length + ' file(s)…';
  await work(files, fieldsOf(form));
  form.querySelector('button').disabled = false;
  tally();
  summary.textContent = 'Done: ' + summary.textContent;
}
const dicom = document.getElementById('dicom');
const uploadDicom = (picked) => run(dicom, async (files, fields) => {
  const jobs = jobsOf(files);
  const values = Object.fromEntries(fields);
  let next = 0;
  const worker = async () => { while (next < jobs.length) { await resumable(jobs[next++], values); tally(); } };
  await Promise.all(Array.from({ length: ${PARALLEL_UPLOADS} }, worker));
}, picked);
dicom.addEventListener('submit', (e) => { e.preventDefault(); uploadDicom(); });
// Dropped, they go at once, with the values the form holds.
const drop = document.getElementById('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.style.borderColor = '#36c'; });
drop.addEventListener('dragleave', () => { drop.style.borderColor = ''; });
drop.addEventListener('drop', async (e) => {
  e.preventDefault();
  drop.style.borderColor = '';
  uploadDicom(await droppedFiles(e.dataTransfer.items));
});
const photos = document.getElementById('photos');
const newStudyFields = document.getElementById('new-study-fields');
const joining = document.getElementById('joining');
// Photos join a stored study (its patient and order) or make a new one (the patient's details required).
function join(study) {
  photos.dataset.study = study ? study.uid : '';
  joining.hidden = !study;
  newStudyFields.hidden = newStudyFields.disabled = !!study;
  if (study) joining.querySelector('span').textContent = study.label;
}
document.getElementById('new-study').addEventListener('click', (e) => { e.preventDefault(); join(null); });
photos.addEventListener('submit', (e) => {
  e.preventDefault();
  run(e.target, async (files, fields) => {
    const rows = files.map((f) => row(nameOf(f)));
    const form = new FormData();
    for (const [name, value] of fields) form.append(name, value);
    files.forEach((f) => form.append('file', f, f.name));
    const study = photos.dataset.study;
    const response = await fetch(study ? '/api/v1/studies/' + encodeURIComponent(study) + '/photos' : '/api/v1/photos', { method: 'POST', body: form });
    const text = await response.text();
    let answer = {};
    try { answer = JSON.parse(text); } catch {}
    if (Array.isArray(answer.files)) answer.files.forEach((f, i) => show(rows[i], f));
    else rows.forEach((r) => refuse(r, detailOf(text, response.statusText)));
  });
});
// Stored studies by Patient ID, or by family name (QIDO-RS, as the signed-in user may read): photos may join one, and
// each downloads as a ZIP, with readable names or as a CD's file-set.
const studies = document.querySelector('#studies tbody');
const found = document.getElementById('found');
const text = (json, tag) => { const v = json[tag] && json[tag].Value && json[tag].Value[0]; return v === undefined ? '' : typeof v === 'object' ? v.Alphabetic || '' : String(v); };
async function qido(params) {
  const response = await fetch('/dicom-web/studies?limit=50&includefield=00081030,00080061&' + new URLSearchParams(params), { headers: { Accept: 'application/dicom+json' } });
  if (response.status === 401 || response.status === 403) throw new Error('Searching stored studies needs the read role; ask the administrator for it.');
  if (response.status === 204) return [];
  if (!response.ok) throw new Error(detailOf(await response.text(), response.statusText));
  return response.json();
}
function link(label, href) {
  const a = document.createElement('a');
  a.textContent = label;
  a.href = href;
  return a;
}
document.getElementById('search').addEventListener('submit', async (e) => {
  e.preventDefault();
  const q = new FormData(e.target).get('q').trim();
  studies.replaceChildren();
  document.getElementById('studies').hidden = true;
  found.textContent = 'Searching…';
  try {
    const lists = await Promise.all([qido({ PatientID: q }), qido({ PatientName: q + '*' })]);
    const byUid = new Map(lists.flat().map((s) => [text(s, '0020000D'), s]));
    found.textContent = byUid.size === 0 ? 'No stored study of that patient.' : byUid.size + ' stored stud' + (byUid.size === 1 ? 'y' : 'ies') + '.';
    for (const [uid, s] of byUid) {
      const tr = studies.insertRow();
      tr.dataset.study = uid;
      const patient = text(s, '00100010') + ' (' + text(s, '00100020') + ')';
      for (const value of [text(s, '00080020'), patient, text(s, '00081030'), text(s, '00080050'), (s['00080061'] && s['00080061'].Value || []).join(', ')]) tr.insertCell().textContent = value;
      const actions = tr.insertCell();
      const add = document.createElement('button');
      add.type = 'button';
      add.textContent = 'Add photos';
      add.addEventListener('click', () => { join({ uid, label: [text(s, '00080020'), patient, text(s, '00081030')].filter(Boolean).join(', ') }); photos.scrollIntoView(); });
      const download = '/api/v1/studies/' + encodeURIComponent(uid) + '/download';
      actions.append(add, ' ', link('ZIP', download), ' ', link('ZIP for a CD', download + '?layout=media'));
    }
    document.getElementById('studies').hidden = byUid.size === 0;
  } catch (err) {
    found.textContent = err.message;
  }
});
`;
