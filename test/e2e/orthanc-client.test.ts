import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startOrthancClient, type Orthanc } from '../helpers/orthanc.js';
import { AS_ADMIN, adminFetch, readMultipartResponse, startServer, type RunningServer } from '../helpers/server.js';

type Fixture = { path: string; studyUID: string; seriesUID: string; sopInstanceUID: string; patientNameUtf8: string; sha256: string };

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/dicom');
/** Every file made by dcmtk/gdcm/OpenJPH (test/fixtures/make-fixtures.sh): sixteen transfer syntaxes, Implicit VR to HTJ2K, and seven character sets. */
const manifest: Fixture[] = JSON.parse(readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8'));
const studyUIDs = [...new Set(manifest.map((f) => f.studyUID))];
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const bySopInstance = (entries: Array<[string, string]>) => Object.fromEntries(entries.sort(([a], [b]) => a.localeCompare(b)));
const expectedHashes = bySopInstance(manifest.map((f) => [f.sopInstanceUID, f.sha256]));
/** What the plugin's retrieve jobs ask for (DicomWebClient.cpp, "HasWadoRsUniversalTransferSyntax"), the instances as stored; /get asks it when told to. */
const AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*';

/** Orthanc's /dicom-web/servers/{name}/qido answer: each attribute flattened to its first value (a PN to its Alphabetic group). */
type OrthancQidoResult = Array<Record<string, { vr: string; Value?: string }>>;

/**
 * Orthanc as a DICOMweb client of PACS-lite, as a clinic running both would use it: it sends studies with STOW-RS,
 * searches with QIDO-RS and pulls studies back with WADO-RS, each request made by the plugin itself.
 */
describe('Orthanc 1.10 with DICOMweb plugin 1.7, a DICOMweb client of PACS-lite', () => {
  let pacs: RunningServer;
  let orthanc: Orthanc;
  /** Orthanc's IDs of the studies it was loaded with. */
  let orthancStudies: string[];
  const qido = (Uri: string, Arguments: Record<string, string> = {}) => orthanc.json<OrthancQidoResult>('POST', '/dicom-web/servers/pacs/qido', { Uri, Arguments });
  const studiesIn = (results: OrthancQidoResult) => results.map((r) => r['0020000D']?.Value).sort();

  beforeAll(async () => {
    pacs = await startServer();
    orthanc = await startOrthancClient({ dicomWebServers: { pacs: { Url: `${pacs.dicomweb}/`, HttpHeaders: AS_ADMIN } } });
    const loaded = new Set<string>();
    for (const f of manifest) {
      const { ParentStudy } = await orthanc.json<{ ParentStudy: string }>('POST', '/instances', readFileSync(path.join(FIXTURES, f.path)));
      loaded.add(ParentStudy);
    }
    orthancStudies = [...loaded];
  });

  afterAll(async () => {
    await orthanc?.stop();
    await pacs?.stop();
  });

  // On a failure, what the plugin asked of PACS-lite during the test and how it was answered (the server logs a line a request).
  beforeEach(({ onTestFailed }) => {
    const from = pacs.logs.length;
    onTestFailed(() => {
      const requests = pacs.logs.slice(from).filter((l) => l.includes('"msg":"request"')).map((l) => JSON.parse(l) as { method: string; path: string; status: number });
      console.error(`PACS-lite answered:\n${requests.map((r) => `  ${r.method} ${r.path} -> ${r.status}`).join('\n')}`);
    });
  });

  it('sends every study with STOW-RS, and PACS-lite stores every instance', async () => {
    const sent = await orthanc.json<{ InstancesCount: string }>('POST', '/dicom-web/servers/pacs/stow', { Resources: orthancStudies });
    expect(Number(sent.InstancesCount)).toBe(manifest.length);
    const stored: string[] = [];
    for (const uid of studyUIDs) {
      const response = await adminFetch(`${pacs.dicomweb}/studies/${uid}/instances`, { headers: { Accept: 'application/dicom+json' } });
      expect(response.status, uid).toBe(200);
      for (const instance of (await response.json()) as Array<Record<string, { Value: string[] }>>) stored.push(instance['00080018']!.Value[0]!);
    }
    expect(stored.sort()).toEqual(manifest.map((f) => f.sopInstanceUID).sort());
  });

  it('finds the studies with QIDO-RS, patient names decoded from every character set', async () => {
    const all = await qido('/studies', { limit: '1000' });
    expect(studiesIn(all)).toEqual([...studyUIDs].sort());
    // Orthanc shows a name's Alphabetic group only.
    const names = Object.fromEntries(all.map((r) => [r['0020000D']!.Value, r['00100010']?.Value]));
    expect(names).toEqual(Object.fromEntries(manifest.map((f) => [f.studyUID, f.patientNameUtf8.split('=')[0]])));
    // A non-ASCII value in the query string, percent-encoded UTF-8 by the plugin, matched regardless of case.
    const latin1 = manifest.find((f) => f.path === 'charset-latin1.dcm')!;
    expect(studiesIn(await qido('/studies', { PatientName: 'mÜller*' }))).toEqual([latin1.studyUID]);
    const ct = manifest.filter((f) => f.path.startsWith('ct-series-'));
    expect(studiesIn(await qido('/studies', { ModalitiesInStudy: 'CT', StudyDate: '20240401' }))).toEqual([ct[0]!.studyUID]);
    const instances = await qido(`/studies/${ct[0]!.studyUID}/instances`);
    expect(instances.map((r) => r['00080018']?.Value).sort()).toEqual(ct.map((f) => f.sopInstanceUID).sort());
  });

  it('gets each instance through the plugin as stored, byte for byte', async () => {
    const got: Array<[string, string]> = [];
    for (const f of manifest) {
      const response = await fetch(`${orthanc.url}/dicom-web/servers/pacs/get`, {
        method: 'POST',
        body: JSON.stringify({ Uri: `/studies/${f.studyUID}/series/${f.seriesUID}/instances/${f.sopInstanceUID}`, HttpHeaders: { Accept: AS_STORED } }),
      });
      expect(response.status, f.path).toBe(200);
      const parts = await readMultipartResponse(response);
      expect(parts, f.path).toHaveLength(1);
      got.push([f.sopInstanceUID, sha256(parts[0]!.body)]);
    }
    expect(bySopInstance(got)).toEqual(expectedHashes);
  });

  it('retrieves every study, series and instance into an emptied Orthanc with WADO-RS, each file byte for byte as loaded', async () => {
    for (const id of orthancStudies) await orthanc.json('DELETE', `/studies/${id}`);
    expect(await orthanc.json('GET', '/instances')).toEqual([]);

    // Every level the plugin can name: the CT study by its series, one multi-frame instance alone, the rest by study.
    const ct = manifest.find((f) => f.path === 'ct-series-1.dcm')!;
    const multiframe = manifest.find((f) => f.path === 'multiframe-40-rle.dcm')!;
    const resources = [
      { Study: ct.studyUID, Series: ct.seriesUID },
      { Study: multiframe.studyUID, Series: multiframe.seriesUID, Instance: multiframe.sopInstanceUID },
      ...studyUIDs.filter((uid) => uid !== ct.studyUID && uid !== multiframe.studyUID).map((Study) => ({ Study })),
    ];
    const retrieved = await orthanc.json<{ ReceivedInstancesCount: string }>('POST', '/dicom-web/servers/pacs/retrieve', { Resources: resources });
    expect(Number(retrieved.ReceivedInstancesCount)).toBe(manifest.length);

    const held = await orthanc.json<Array<{ ID: string; MainDicomTags: { SOPInstanceUID: string } }>>('GET', '/instances?expand');
    const hashes: Array<[string, string]> = [];
    for (const instance of held) {
      const file = await fetch(`${orthanc.url}/instances/${instance.ID}/file`);
      expect(file.status).toBe(200);
      hashes.push([instance.MainDicomTags.SOPInstanceUID, sha256(new Uint8Array(await file.arrayBuffer()))]);
    }
    expect(bySopInstance(hashes)).toEqual(expectedHashes);
  });
});
