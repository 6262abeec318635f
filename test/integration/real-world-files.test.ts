import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import dicomParser from 'dicom-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminFetch, readMultipartResponse, startServer, stow, type RunningServer } from '../helpers/server.js';

/**
 * pydicom's collection of test files (Debian's python3-pydicom): files from many writers, with the quirks real senders
 * have (a meta header naming another SOP Instance UID, elements sent as UN, native YBR_FULL_422, big endian, deflate,
 * odd sizes, 32-bit RLE…) and some broken on purpose. Each storable one is stored, found, read back byte for byte and
 * converted to Explicit VR Little Endian; each broken one is refused with a reason.
 */

const PYDICOM = '/usr/lib/python3/dist-packages/pydicom/data';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';

/** Not storable instances, and why: the reason the answer must give. */
const REFUSED: Record<string, RegExp> = {
  'ExplVR_BigEndNoMeta.dcm': /preamble and "DICM" prefix are missing/,
  'ExplVR_LitEndNoMeta.dcm': /preamble and "DICM" prefix are missing/,
  'no_meta.dcm': /preamble and "DICM" prefix are missing/,
  'rtstruct.dcm': /preamble and "DICM" prefix are missing/,
  'MR_truncated.dcm': /cut short/,
  'rtplan_truncated.dcm': /declares more bytes than its sequence or the file holds/,
  'meta_missing_tsyntax.dcm': /no Transfer Syntax UID/,
  // A JPEG file with a DICOM name: its bytes are not a data set.
  'SC_rgb_jpeg.dcm': /past the end of the file/,
  // Fragments of data sets pydicom's own tests read, without the UIDs of an instance.
  'UN_sequence.dcm': /SOPInstanceUID \(0008,0018\) is missing/,
  'empty_charset_LEI.dcm': /SOPInstanceUID \(0008,0018\) is missing/,
  'no_meta_group_length.dcm': /SOPInstanceUID \(0008,0018\) is missing/,
  'priv_SQ.dcm': /SOPInstanceUID \(0008,0018\) is missing/,
  'nested_priv_SQ.dcm': /unreadable DICOM data set|SOPInstanceUID \(0008,0018\) is missing/,
  'chrSQEncoding.dcm': /SOPInstanceUID \(0008,0018\) is missing/,
  'chrSQEncoding1.dcm': /SOPInstanceUID \(0008,0018\) is missing/,
};

/** Stored, but not drawn, and why: what the rendered resource must say instead. */
const NOT_RENDERED: Record<string, [status: number, reason: RegExp]> = {
  // Its codestream's SIZ marker holds the bytes of a sequence delimiter (a trap for parsers that search for one).
  'JPEG2000-embedded-sequence-delimiter.dcm': [422, /codestream is 3722445056×1024 .* but the data set says 256×1024/],
  'SC_rgb_rle_32bit.dcm': [501, /BitsAllocated \(0028,0100\) 32 is rendered for MONOCHROME1\/2 only/],
  'SC_rgb_rle_32bit_2frame.dcm': [501, /BitsAllocated \(0028,0100\) 32 is rendered for MONOCHROME1\/2 only/],
  'badVR.dcm': [422, /NumberOfFrames \(0028,0008\) holds "1A", which is not a number/],
};

let server: RunningServer;
const files: Array<{ name: string; bytes: Buffer }> = [];

beforeAll(async () => {
  for (const folder of ['test_files', 'charset_files']) {
    const names = (await fs.readdir(path.join(PYDICOM, folder))).filter((n) => n.endsWith('.dcm')).sort();
    for (const name of names) files.push({ name, bytes: await fs.readFile(path.join(PYDICOM, folder, name)) });
  }
  server = await startServer();
});

afterAll(async () => {
  await server?.stop();
});

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

describe("pydicom's test files", () => {
  it('are all there (python3-pydicom is installed)', () => {
    expect(files.length).toBeGreaterThan(80);
  });

  it('are each stored, found, read back byte for byte and converted, or refused with the reason', async () => {
    const problems: string[] = [];
    for (const { name, bytes } of files) {
      const response = await stow(server.dicomweb, [bytes]);
      const answer = await response.json();
      const failure = answer['00081198']?.Value?.[0];
      const refused = REFUSED[name];
      if (refused) {
        if (response.status !== 409 || !refused.test(failure?.['00000902']?.Value?.[0] ?? '')) problems.push(`${name}: expected a refusal matching ${refused}, got ${response.status} ${JSON.stringify(answer).slice(0, 200)}`);
        continue;
      }
      if (response.status !== 200) {
        problems.push(`${name}: ${response.status} ${JSON.stringify(failure ?? answer).slice(0, 300)}`);
        continue;
      }
      const ds = dicomParser.parseDicom(bytes, { untilTag: 'x7fe00010' } as dicomParser.ParseDicomOptions);
      const [study, series, sop] = ['x0020000d', 'x0020000e', 'x00080018'].map((t) => ds.string(t)!);
      const url = `${server.dicomweb}/studies/${study}/series/${series}/instances/${sop}`;

      const found = await (await adminFetch(`${server.dicomweb}/studies/${study}/series/${series}/instances?SOPInstanceUID=${sop}`)).json();
      if (found[0]?.['00080018']?.vr !== 'UI' || found[0]?.['0020000D']?.vr !== 'UI') problems.push(`${name}: QIDO answers ${JSON.stringify(found[0]).slice(0, 200)}`);

      const [stored] = await readMultipartResponse(await adminFetch(url, { headers: { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' } }));
      if (sha256(stored!.body) !== sha256(bytes)) problems.push(`${name}: not retrieved byte for byte`);

      const converted = await adminFetch(url, { headers: { Accept: `multipart/related; type="application/dicom"; transfer-syntax=${EXPLICIT_LE}` } });
      if (converted.status !== 200) problems.push(`${name}: Explicit VR Little Endian answered ${converted.status} ${await converted.text()}`);
      else {
        const [part] = await readMultipartResponse(converted);
        const syntax = /transfer-syntax=([\d.]+)/.exec(part!.headers['content-type'] ?? '')?.[1];
        const inFile = dicomParser.parseDicom(part!.body, { untilTag: 'x00020010' } as dicomParser.ParseDicomOptions).string('x00020010');
        // Sent as stored only when its frames cannot be decoded here, and labelled with what it is.
        if (syntax !== inFile) problems.push(`${name}: labelled ${syntax}, holds ${inFile}`);
      }

      if (ds.elements.x7fe00010) {
        const rendered = await adminFetch(`${url}/rendered`, { headers: { Accept: 'image/png' } });
        const [status, reason] = NOT_RENDERED[name] ?? [200, /^/];
        const text = rendered.status === 200 ? '' : ((await rendered.json()) as { detail: string }).detail;
        if (rendered.status !== status || !reason.test(text)) problems.push(`${name}: rendered answered ${rendered.status} ${text}`);
      }

      const metadata = await adminFetch(`${url}/metadata`);
      if (metadata.status !== 200) problems.push(`${name}: metadata answered ${metadata.status}`);

      // Instances sharing a UID with another variant of the same file are removed before the next is sent.
      const removed = await adminFetch(`${server.dicomweb}/studies/${study}?reason=test+cleanup`, { method: 'DELETE' });
      if (![200, 202, 204].includes(removed.status)) problems.push(`${name}: DELETE answered ${removed.status} ${await removed.text()}`);
    }
    expect(problems).toEqual([]);
  }, 180_000);
});
