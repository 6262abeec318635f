import { firstString, type DicomJson } from './json.js';
import { Tag } from './tags.js';
import { TransferSyntax } from './transfer-syntax.js';
import { newUid, writeDataSet, writePart10, type WriteElement } from './write.js';

/** Media Storage Directory Storage (PS3.4 Annex I, PS3.10 8.6). */
const MEDIA_STORAGE_DIRECTORY = '1.2.840.10008.1.3.10';
const ENCAPSULATED_PDF = '1.2.840.10008.5.1.4.1.1.104.1';
const ITEM_OVERHEAD = 16; // the item's tag and length, and its delimiter
const SEQUENCE_HEADER = 12; // tag, VR, reserved bytes and the undefined length of (0004,1220)

/** One file of a file-set: where it lies (PS3.10 8.5: up to 8 components of A–Z, 0–9 and _, 8 at most each) and what it is. */
export type DirectoryFile = { fileId: string[]; sopClassUid: string; sopInstanceUid: string; transferSyntaxUid: string; json: DicomJson };
export type DirectorySeries = { json: DicomJson; files: DirectoryFile[] };
export type DirectoryStudy = { json: DicomJson; series: DirectorySeries[] };

/**
 * The DICOMDIR of a file-set of one patient's study (PS3.10 8, PS3.3 F): a PATIENT record, its STUDY, a SERIES record
 * per series and one record per file, linked by byte offsets as the standard requires, so a CD viewer, a burning
 * tool or another PACS finds every file without reading them all. Text is written in UTF-8 (ISO_IR 192).
 */
export function dicomdir(study: DirectoryStudy, fileSetId = 'PACSLITE'): Buffer {
  const text = (json: DicomJson, tag: string) => firstString(json, tag) ?? '';
  const charset: WriteElement = { tag: Tag.SpecificCharacterSet, vr: 'CS', value: 'ISO_IR 192' };
  // Each record as a node: its keys, and the records it points down to and along to.
  type Node = { type: string; keys: WriteElement[]; children: Node[] };
  const patient: Node = {
    type: 'PATIENT',
    keys: [charset, { tag: Tag.PatientName, vr: 'PN', value: text(study.json, Tag.PatientName) }, { tag: Tag.PatientID, vr: 'LO', value: text(study.json, Tag.PatientID) }],
    children: [
      {
        type: 'STUDY',
        keys: [
          charset,
          { tag: Tag.StudyDate, vr: 'DA', value: text(study.json, Tag.StudyDate) },
          { tag: Tag.StudyTime, vr: 'TM', value: text(study.json, Tag.StudyTime) },
          { tag: Tag.AccessionNumber, vr: 'SH', value: text(study.json, Tag.AccessionNumber) },
          { tag: Tag.StudyDescription, vr: 'LO', value: text(study.json, Tag.StudyDescription) },
          { tag: Tag.StudyInstanceUID, vr: 'UI', value: text(study.json, Tag.StudyInstanceUID) },
          { tag: Tag.StudyID, vr: 'SH', value: text(study.json, Tag.StudyID) },
        ],
        children: study.series.map((series) => ({
          type: 'SERIES',
          keys: [
            charset,
            { tag: Tag.Modality, vr: 'CS', value: text(series.json, Tag.Modality) },
            { tag: Tag.SeriesInstanceUID, vr: 'UI', value: text(series.json, Tag.SeriesInstanceUID) },
            { tag: Tag.SeriesNumber, vr: 'IS', value: text(series.json, Tag.SeriesNumber) },
          ],
          children: series.files.map(fileRecord),
        })),
      },
    ],
  };

  // Records in the order they are written: each followed by the records below it (depth first).
  const order: Node[] = [];
  const visit = (node: Node) => {
    order.push(node);
    node.children.forEach(visit);
  };
  visit(patient);
  // Offsets count from the first byte of the file (PS3.3 F.3.2.1); every record's length is known before its
  // offsets are, as they are 4-byte values, so the records are measured once and then written with them.
  const recordElements = (node: Node, offsets: { next: number; lower: number }): WriteElement[] => [
    { tag: '00041400', vr: 'UL', value: offsets.next },
    { tag: '00041410', vr: 'US', value: 0xffff },
    { tag: '00041420', vr: 'UL', value: offsets.lower },
    { tag: '00041430', vr: 'CS', value: node.type },
    ...node.keys,
  ];
  const header = (first: number, last: number): WriteElement[] => [
    { tag: '00041130', vr: 'CS', value: fileSetId },
    { tag: '00041200', vr: 'UL', value: first },
    { tag: '00041202', vr: 'UL', value: last },
    { tag: '00041212', vr: 'US', value: 0 },
  ];
  const meta = { transferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian, sopClassUID: MEDIA_STORAGE_DIRECTORY, sopInstanceUID: newUid() };
  const start = writePart10(header(0, 0), meta).length + SEQUENCE_HEADER;
  const offsetOf = new Map<Node, number>();
  let at = start;
  for (const node of order) {
    offsetOf.set(node, at);
    at += writeDataSet(recordElements(node, { next: 0, lower: 0 }), TransferSyntax.ExplicitVRLittleEndian).length + ITEM_OVERHEAD;
  }
  const items: WriteElement[][] = [];
  const place = new Map(order.map((node, i) => [node, i]));
  const link = (siblings: Node[]) =>
    siblings.forEach((node, i) => {
      const next = siblings[i + 1];
      items[place.get(node)!] = recordElements(node, { next: next ? offsetOf.get(next)! : 0, lower: node.children.length ? offsetOf.get(node.children[0]!)! : 0 });
      link(node.children);
    });
  link([patient]);
  return writePart10([...header(start, start), { tag: '00041220', vr: 'SQ', value: items }], meta);
}

/** The record of one file: IMAGE for images, ENCAP DOC for a PDF (PS3.3 F.5). */
function fileRecord(file: DirectoryFile) {
  const text = (tag: string) => firstString(file.json, tag) ?? '';
  const references: WriteElement[] = [
    { tag: '00041500', vr: 'CS', value: file.fileId },
    { tag: '00041510', vr: 'UI', value: file.sopClassUid },
    { tag: '00041511', vr: 'UI', value: file.sopInstanceUid },
    { tag: '00041512', vr: 'UI', value: file.transferSyntaxUid },
    { tag: Tag.SpecificCharacterSet, vr: 'CS', value: 'ISO_IR 192' },
    { tag: Tag.InstanceNumber, vr: 'IS', value: text(Tag.InstanceNumber) },
  ];
  if (file.sopClassUid === ENCAPSULATED_PDF) {
    return {
      type: 'ENCAP DOC',
      keys: [
        ...references,
        { tag: '00080023', vr: 'DA', value: text('00080023') },
        { tag: '00080033', vr: 'TM', value: text('00080033') },
        { tag: '00420010', vr: 'ST', value: text('00420010') },
        { tag: '00420012', vr: 'LO', value: 'application/pdf' },
      ],
      children: [],
    };
  }
  return { type: 'IMAGE', keys: references, children: [] };
}
