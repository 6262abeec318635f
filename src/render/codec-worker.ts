/**
 * A codec worker (started by codec-pool.ts): decodes one frame at a time with the compiled codecs, so that
 * a codec that crashes, loops or eats memory takes this thread down and not the server.
 * The wasm codecs are loaded from node_modules on first use; nothing is fetched.
 */
import { createRequire } from 'node:module';
import { parentPort } from 'node:worker_threads';
import type { CodecFrame, CodecHints, CodecName, CodecRequest, CodecResponse, DisplayJob } from './codec-protocol.js';
import { cropped } from './crop.js';
import { toDisplay } from './display.js';
import { RenderError, type DisplayImage } from './types.js';

const require = createRequire(import.meta.url);

/** The embind decoder classes of the cornerstone codecs share this shape (codecs/packages/*\/src/*Decoder.hpp). */
type WasmDecoder = {
  getEncodedBuffer(length: number): Uint8Array;
  getDecodedBuffer(): Uint8Array;
  decode(): void;
  /** JPEG 2000 and HTJ2K only: decoding at a lower resolution level. */
  decodeSubResolution?(level: number, layer: number): void;
  calculateSizeAtDecompositionLevel?(level: number): { width: number; height: number };
  getFrameInfo(): { width: number; height: number; bitsPerSample: number; componentCount: number; isSigned?: boolean };
  getInterleaveMode?(): number;
  delete(): void;
};
type WasmModule = Record<string, unknown> & { getExceptionMessage?: (e: unknown) => string | string[] };
type WasmFactory = (module: { print: (s: string) => void; printErr: (s: string) => void }) => Promise<WasmModule>;

const WASM: Record<'libjpeg-turbo' | 'charls' | 'openjpeg' | 'openjph', { path: string; decoder: string }> = {
  'libjpeg-turbo': { path: '@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs', decoder: 'JPEGDecoder' },
  charls: { path: '@cornerstonejs/codec-charls/decodewasmjs', decoder: 'JpegLSDecoder' },
  openjpeg: { path: '@cornerstonejs/codec-openjpeg/decodewasmjs', decoder: 'J2KDecoder' },
  openjph: { path: '@cornerstonejs/codec-openjph', decoder: 'HTJ2KDecoder' },
};

/** A wasm heap never shrinks: after a frame this large the module is dropped and loaded afresh next time. */
const RECYCLE_AFTER_BYTES = 64 * 1024 * 1024;

const modules = new Map<string, Promise<WasmModule>>();
/** What the codec printed during the current frame; its last lines explain a failure. */
let printed: string[] = [];
const note = (line: string) => {
  printed.push(line);
  if (printed.length > 20) printed.shift();
};

/** A codec that could not be loaded: the server's fault, not the frame's. */
class Unavailable extends Error {}

async function loading<T>(what: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (e) {
    throw new Unavailable(`${what} could not be loaded: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function wasm(name: keyof typeof WASM): Promise<WasmModule> {
  let module = modules.get(name);
  if (!module) {
    module = loading(name, async () => (require(WASM[name].path) as WasmFactory)({ print: note, printErr: note }));
    module.catch(() => modules.delete(name));
    modules.set(name, module);
  }
  return module;
}

async function decodeWasm(name: keyof typeof WASM, bytes: Uint8Array, hints: CodecHints): Promise<CodecFrame> {
  const module = await wasm(name);
  const Decoder = module[WASM[name].decoder] as new () => WasmDecoder;
  const decoder = new Decoder();
  try {
    decoder.getEncodedBuffer(bytes.length).set(bytes);
    // Only the resolution levels needed (decode.ts keeps it within the codestream's): a thumbnail of a 16000²
    // codestream decodes a few hundred pixels a side.
    const reduced = decoder.decodeSubResolution ? (hints.reduce ?? 0) : 0;
    if (reduced > 0) decoder.decodeSubResolution!(reduced, 0);
    else decoder.decode();
    // OpenJPEG and OpenJPH report some failures only by printing them and leaving the image empty.
    const error = printed.find((l) => /\berror\b/i.test(l));
    if (error) throw new Error(error.replace(/^\[ERROR\]\s*/, ''));
    // The frame info gives the full size whatever the level decoded.
    const info = { ...decoder.getFrameInfo(), ...(reduced > 0 ? decoder.calculateSizeAtDecompositionLevel!(reduced) : {}) };
    if (info.width === 0 || info.height === 0) throw new Error(`${name} returned no image`);
    const pixels = decoder.getDecodedBuffer().slice(); // out of the wasm heap, into a buffer we can transfer
    const bytesPerSample = info.bitsPerSample <= 8 ? 1 : 2;
    const interleave = decoder.getInterleaveMode?.();
    if (pixels.length + bytes.length > RECYCLE_AFTER_BYTES) modules.delete(name);
    return {
      pixels,
      width: info.width,
      height: info.height,
      components: info.componentCount,
      bitsPerSample: info.bitsPerSample,
      bytesPerSample,
      planar: interleave === 0 && info.componentCount > 1,
      reduced,
    };
  } catch (e) {
    // A codec that threw may have left its heap in any state.
    modules.delete(name);
    const detail = describe(e, module, name);
    const said = printed.filter((l) => /error|fail|invalid|corrupt|premature|short|truncat/i.test(l)).at(-1)?.replace(/^\[ERROR\]\s*/, '');
    throw new Error(said && !detail.includes(said) ? `${detail} (${said})` : detail);
  } finally {
    try {
      decoder.delete();
    } catch {
      // the module aborted; it is dropped above
    }
  }
}

async function decodeJpegLossless(bytes: Uint8Array, hints: CodecHints): Promise<CodecFrame> {
  const { Decoder } = await loading('jpeg-lossless-decoder-js', () => import('@cornerstonejs/jpeg-lossless-decoder-js'));
  const decoder = new Decoder();
  const bytesPerSample = hints.bitsAllocated <= 8 ? 1 : 2;
  const out = decoder.decode(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.length, bytesPerSample);
  // It does not report a stream that ends too soon; reading past the end of the bytes tells some of them.
  if (decoder.yLoc < decoder.yDim || (decoder.stream?.index ?? 0) > bytes.length) throw new Error('the JPEG Lossless stream ends before its image does');
  return {
    pixels: new Uint8Array(out.buffer, out.byteOffset, out.byteLength),
    width: decoder.xDim,
    height: decoder.yDim,
    components: decoder.numComp,
    bitsPerSample: decoder.frame.precision,
    bytesPerSample,
    planar: false,
    reduced: 0,
  };
}

type DcmjsCodecs = typeof import('dcmjs-codecs');
let dcmjsCodecs: Promise<DcmjsCodecs> | undefined;

/** 12-bit JPEG (processes 2 and 4): libjpeg-turbo's cornerstone build is 8-bit only; dcmjs-codecs carries a 12-bit libjpeg. */
async function decodeJpeg12(bytes: Uint8Array, hints: CodecHints): Promise<CodecFrame> {
  dcmjsCodecs ??= loading('dcmjs-codecs', async () => {
    const codecs = require('dcmjs-codecs') as DcmjsCodecs;
    await codecs.NativeCodecs.initializeAsync({ webAssemblyModulePathOrUrl: require.resolve('dcmjs-codecs/build/dcmjs-native-codecs.wasm') });
    return codecs;
  });
  dcmjsCodecs.catch(() => (dcmjsCodecs = undefined));
  const { Context, NativeCodecs } = await dcmjsCodecs;
  const context = new Context({
    width: hints.columns,
    height: hints.rows,
    bitsAllocated: hints.bitsAllocated,
    bitsStored: hints.bitsStored,
    samplesPerPixel: hints.samplesPerPixel,
    pixelRepresentation: hints.pixelRepresentation,
    planarConfiguration: 0,
    photometricInterpretation: hints.photometric,
    encodedBuffer: bytes,
  });
  const out = NativeCodecs.decodeJpeg(context, { convertColorspaceToRgb: hints.photometric.startsWith('YBR') });
  const pixels = out.getDecodedBuffer();
  if (!pixels) throw new Error('the 12-bit JPEG codec returned no pixels');
  const bytesPerSample = hints.bitsAllocated <= 8 ? 1 : 2;
  const components = hints.samplesPerPixel;
  // dcmjs-codecs decodes into the size it was told; a stream of another size fails inside the codec.
  return { pixels: pixels.slice(), width: hints.columns, height: hints.rows, components, bitsPerSample: hints.bitsStored, bytesPerSample, planar: false, reduced: 0 };
}

function describe(e: unknown, module?: WasmModule, codec?: string): string {
  // a C++ exception from the wasm: its message when the build exports it (a string, or [type, message] in newer emscripten)
  if (typeof e === 'number') {
    let message: string | string[] | undefined;
    try {
      message = module?.getExceptionMessage?.(e);
    } catch {
      // no message to be had
    }
    return (Array.isArray(message) ? message.filter(Boolean).join(': ') : message) || `${codec ?? 'the codec'} rejected the stream`;
  }
  return e instanceof Error ? e.message : String(e);
}

async function decode({ codec, bytes, hints }: { codec: CodecName; bytes: Uint8Array; hints: CodecHints }): Promise<CodecFrame> {
  switch (codec) {
    case 'jpeg-lossless':
      return decodeJpegLossless(bytes, hints);
    case 'jpeg12':
      return decodeJpeg12(bytes, hints);
    default:
      return decodeWasm(codec, bytes, hints);
  }
}

/** The 8-bit image of decoded pixels: a pass over every pixel, which would hold up the server's event loop. */
function display({ frame, module, window, region }: DisplayJob): DisplayImage {
  const image = toDisplay(frame, module, window);
  return region ? cropped(image, region) : image;
}

/** The buffer under a view, when the view is all of it: only then can it be handed over rather than copied. */
function transferable(view: Uint8Array): ArrayBuffer[] {
  return view.byteOffset === 0 && view.byteLength === view.buffer.byteLength ? [view.buffer as ArrayBuffer] : [];
}

parentPort!.on('message', async (request: CodecRequest) => {
  printed = [];
  let response: CodecResponse;
  try {
    response = 'display' in request ? { id: request.id, image: display(request.display) } : { id: request.id, frame: await decode(request) };
  } catch (e) {
    response = { id: request.id, error: describe(e), unavailable: e instanceof Unavailable, status: e instanceof RenderError ? e.status : undefined };
  }
  const transfer = 'frame' in response ? transferable(response.frame.pixels) : 'image' in response ? transferable(response.image.data) : [];
  parentPort!.postMessage(response, transfer);
});
