/**
 * Text of the Specific Character Set (0008,0005), decoded to Unicode: PS3.5 section 6.1 and Annexes H–K.
 * Single-byte sets, UTF-8 and GB18030/GBK decode whole; ISO 2022 code extensions switch sets by escape
 * sequence inside a value, and fall back to the initial sets at every delimiter.
 */

type SetId =
  | 'ascii' | 'jisx0201' | 'jisx0208' | 'jisx0212' // G0
  | 'latin1' | 'latin2' | 'latin3' | 'latin4' | 'cyrillic' | 'arabic' | 'greek' | 'hebrew' | 'latin5' | 'latin9' | 'thai'
  | 'katakana' | 'ksx1001' | 'gb2312'; // G1

const SINGLE_BYTE_LABEL: Partial<Record<SetId, string>> = {
  latin1: 'iso-8859-1', latin2: 'iso-8859-2', latin3: 'iso-8859-3', latin4: 'iso-8859-4', cyrillic: 'iso-8859-5',
  arabic: 'iso-8859-6', greek: 'iso-8859-7', hebrew: 'iso-8859-8', latin5: 'iso-8859-9', latin9: 'iso-8859-15', thai: 'windows-874',
};

/** Defined terms without code extensions: the whole value decodes with one decoder. */
const WHOLE: Record<string, string> = {
  'ISO_IR 100': 'iso-8859-1', 'ISO_IR 101': 'iso-8859-2', 'ISO_IR 109': 'iso-8859-3', 'ISO_IR 110': 'iso-8859-4',
  'ISO_IR 144': 'iso-8859-5', 'ISO_IR 127': 'iso-8859-6', 'ISO_IR 126': 'iso-8859-7', 'ISO_IR 138': 'iso-8859-8',
  'ISO_IR 148': 'iso-8859-9', 'ISO_IR 203': 'iso-8859-15', 'ISO_IR 166': 'windows-874', 'ISO_IR 192': 'utf-8',
  GB18030: 'gb18030', GBK: 'gbk',
};

/** The G0/G1 sets each ISO 2022 defined term designates (PS3.3 Table C.12-3, C.12-4). */
const EXTENDED: Record<string, { g0?: SetId; g1?: SetId }> = {
  'ISO 2022 IR 6': { g0: 'ascii' },
  'ISO 2022 IR 100': { g1: 'latin1' }, 'ISO 2022 IR 101': { g1: 'latin2' }, 'ISO 2022 IR 109': { g1: 'latin3' },
  'ISO 2022 IR 110': { g1: 'latin4' }, 'ISO 2022 IR 144': { g1: 'cyrillic' }, 'ISO 2022 IR 127': { g1: 'arabic' },
  'ISO 2022 IR 126': { g1: 'greek' }, 'ISO 2022 IR 138': { g1: 'hebrew' }, 'ISO 2022 IR 148': { g1: 'latin5' },
  'ISO 2022 IR 203': { g1: 'latin9' }, 'ISO 2022 IR 166': { g1: 'thai' }, 'ISO 2022 IR 13': { g0: 'jisx0201', g1: 'katakana' },
  'ISO 2022 IR 87': { g0: 'jisx0208' }, 'ISO 2022 IR 159': { g0: 'jisx0212' }, 'ISO 2022 IR 149': { g1: 'ksx1001' },
  'ISO 2022 IR 58': { g1: 'gb2312' },
};
/** Non-extension terms usable as the first value beside extensions: they fix the initial G1. */
const INITIAL_G1: Record<string, SetId> = {
  'ISO_IR 100': 'latin1', 'ISO_IR 101': 'latin2', 'ISO_IR 109': 'latin3', 'ISO_IR 110': 'latin4', 'ISO_IR 144': 'cyrillic',
  'ISO_IR 127': 'arabic', 'ISO_IR 126': 'greek', 'ISO_IR 138': 'hebrew', 'ISO_IR 148': 'latin5', 'ISO_IR 203': 'latin9',
  'ISO_IR 166': 'thai', 'ISO_IR 13': 'katakana',
};

/** Escape sequences (PS3.5 Table 6.1-2, 6.2-1): bytes after ESC → [graphic set, designated set]. */
const ESCAPES: Array<[string, 'g0' | 'g1', SetId]> = [
  ['(B', 'g0', 'ascii'], ['(J', 'g0', 'jisx0201'], ['$B', 'g0', 'jisx0208'], ['$@', 'g0', 'jisx0208'], ['$(D', 'g0', 'jisx0212'],
  [')I', 'g1', 'katakana'], ['-A', 'g1', 'latin1'], ['-B', 'g1', 'latin2'], ['-C', 'g1', 'latin3'], ['-D', 'g1', 'latin4'],
  ['-L', 'g1', 'cyrillic'], ['-G', 'g1', 'arabic'], ['-F', 'g1', 'greek'], ['-H', 'g1', 'hebrew'], ['-M', 'g1', 'latin5'],
  ['-b', 'g1', 'latin9'], ['-T', 'g1', 'thai'], ['$)C', 'g1', 'ksx1001'], ['$)A', 'g1', 'gb2312'],
];

const decoders = new Map<string, TextDecoder>();
function decoder(label: string): TextDecoder {
  let d = decoders.get(label);
  if (!d) decoders.set(label, (d = new TextDecoder(label)));
  return d;
}

/** Whether every term of a Specific Character Set value is one decodeText knows (empty: the default repertoire). */
export function isKnownCharacterSet(terms: string[]): boolean {
  return terms.every((t) => t === '' || t === 'ISO_IR 6' || t === 'ISO_IR 13' || Object.hasOwn(WHOLE, t) || Object.hasOwn(EXTENDED, t) || Object.hasOwn(INITIAL_G1, t));
}

export function decodeText(bytes: Uint8Array, specificCharacterSet: string | string[] | undefined, vr: string): string {
  const terms = (Array.isArray(specificCharacterSet) ? specificCharacterSet : (specificCharacterSet ?? '').split('\\')).map((t) => t.trim());
  const extended = terms.some((t) => t.startsWith('ISO 2022'));
  if (!extended) {
    const label = WHOLE[terms[0] ?? ''];
    if (label) return decoder(label).decode(bytes);
    if (terms[0] === 'ISO_IR 13') return decodeRun(bytes, 'katakana');
    return decodeDefault(bytes);
  }
  const first = terms[0] ?? '';
  const initial = { g0: EXTENDED[first]?.g0 === 'jisx0201' ? ('jisx0201' as SetId) : ('ascii' as SetId), g1: EXTENDED[first]?.g1 ?? INITIAL_G1[first] };
  return decodeExtended(bytes, initial, vr === 'PN');
}

/** The default repertoire is ASCII; undeclared high bytes are read as UTF-8 when valid, else Latin-1. */
function decodeDefault(bytes: Uint8Array): string {
  if (bytes.every((b) => b < 0x80)) return Buffer.from(bytes).toString('latin1');
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return decoder('iso-8859-1').decode(bytes);
  }
}

const DELIMITERS = new Set([0x5c, 0x0d, 0x0a, 0x09, 0x0c]);
const PN_DELIMITERS = new Set([0x5e, 0x3d]);

function decodeExtended(bytes: Uint8Array, initial: { g0: SetId; g1?: SetId }, personName: boolean): string {
  let g0 = initial.g0;
  let g1 = initial.g1;
  let out = '';
  let runStart = 0;
  let runSet: SetId | undefined;
  const flush = (end: number) => {
    if (runSet !== undefined && end > runStart) out += decodeRun(bytes.subarray(runStart, end), runSet);
    runStart = end;
  };
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i]!;
    if (b === 0x1b) {
      flush(i);
      const tail = Buffer.from(bytes.subarray(i + 1, i + 4)).toString('latin1');
      const hit = ESCAPES.find(([seq]) => tail.startsWith(seq));
      if (hit) {
        if (hit[1] === 'g0') g0 = hit[2];
        else g1 = hit[2];
        i += 1 + hit[0].length;
      } else i += 1; // unknown escape: dropped
      runStart = i;
      runSet = undefined;
      continue;
    }
    const twoByteG0 = g0 === 'jisx0208' || g0 === 'jisx0212';
    if (!twoByteG0 && (DELIMITERS.has(b) || (personName && PN_DELIMITERS.has(b)))) {
      flush(i);
      out += String.fromCharCode(b);
      g0 = initial.g0;
      g1 = initial.g1;
      runStart = i + 1;
      runSet = undefined;
      i++;
      continue;
    }
    const set = b >= 0x80 ? (g1 ?? 'latin1') : g0;
    if (set !== runSet) {
      flush(i);
      runSet = set;
    }
    i++;
  }
  flush(bytes.length);
  return out;
}

function decodeRun(run: Uint8Array, set: SetId): string {
  switch (set) {
    case 'ascii':
    case 'jisx0201':
      return Buffer.from(run).toString('latin1');
    case 'katakana':
      // JIS X 0201 katakana: 0xA1–0xDF map to the half-width forms U+FF61–U+FF9F.
      return Array.from(run, (b) => (b >= 0xa1 && b <= 0xdf ? String.fromCharCode(0xff61 + b - 0xa1) : String.fromCharCode(b))).join('');
    case 'jisx0208':
      return decoder('iso-2022-jp').decode(Buffer.concat([Buffer.from([0x1b, 0x24, 0x42]), run, Buffer.from([0x1b, 0x28, 0x42])]));
    case 'jisx0212': {
      // EUC-JP carries JIS X 0212 as 0x8F plus both bytes with the high bit set.
      const euc: number[] = [];
      for (let i = 0; i + 1 < run.length; i += 2) euc.push(0x8f, run[i]! | 0x80, run[i + 1]! | 0x80);
      return decoder('euc-jp').decode(new Uint8Array(euc));
    }
    case 'ksx1001':
      return decoder('euc-kr').decode(run);
    case 'gb2312':
      return decoder('gbk').decode(run);
    default:
      return decoder(SINGLE_BYTE_LABEL[set] ?? 'iso-8859-1').decode(run);
  }
}
