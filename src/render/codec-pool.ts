import { Worker, type ResourceLimits } from 'node:worker_threads';
import type { CodecFrame, CodecHints, CodecName, CodecRequest, CodecResponse, DisplayJob } from './codec-protocol.js';
import { RenderError, type DisplayImage } from './types.js';

export type CodecPoolOptions = {
  /** Worker threads decoding at once (default 2). */
  size?: number;
  /** Longest a frame may take to decode before its worker is stopped (default 20 s). */
  timeoutMs?: number;
  /** Frames that may wait for a worker before more are refused with 503 (default 64). */
  maxQueue?: number;
  /** Heap limits of each worker; wasm codecs allocate outside the JS heap, within their own 2-4 GiB ceiling. */
  resourceLimits?: ResourceLimits;
  /** Called with each worker as it starts (tests use it to stop one mid-decode). */
  onWorker?: (worker: Worker) => void;
};

type Job = {
  request: CodecRequest;
  /** Buffers handed to the worker rather than copied. */
  transfer: ArrayBuffer[];
  resolve: (result: CodecFrame | DisplayImage) => void;
  reject: (error: RenderError) => void;
  timer?: NodeJS.Timeout;
};
type Slot = { worker: Worker; job?: Job };

const DEFAULTS = { size: 2, timeoutMs: 20_000, maxQueue: 64, resourceLimits: { maxOldGenerationSizeMb: 256, maxYoungGenerationSizeMb: 32, stackSizeMb: 4 } };

/**
 * A small pool of codec worker threads. A worker that dies, runs out of memory or overruns the
 * per-frame timeout fails only its own frame (500, or 503 for a timeout) and is replaced on demand.
 * Frame bytes are transferred to the worker and the pixels transferred back, never copied.
 */
export class CodecPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private readonly options: Required<Omit<CodecPoolOptions, 'onWorker'>> & Pick<CodecPoolOptions, 'onWorker'>;
  private nextId = 1;
  private closed = false;

  constructor(options: CodecPoolOptions = {}) {
    this.options = { ...DEFAULTS, ...options };
  }

  /** Decodes one frame. `bytes` is transferred when it owns its whole buffer (and then is detached), else copied once. */
  decode(codec: CodecName, bytes: Uint8Array, hints: CodecHints): Promise<CodecFrame> {
    const owned = owns(bytes) ? bytes : new Uint8Array(bytes);
    return this.run({ id: this.nextId++, codec, bytes: owned, hints }, [owned.buffer as ArrayBuffer]) as Promise<CodecFrame>;
  }

  /**
   * Turns decoded pixels into the 8-bit image (window, LUTs, colour, crop) in a worker: a pass over every pixel
   * that would otherwise hold up the event loop. The frame's pixels are transferred when they own their buffer.
   */
  async display(job: DisplayJob): Promise<DisplayImage> {
    const pixels = job.frame.pixels;
    const transfer = owns(pixels) ? [pixels.buffer as ArrayBuffer] : [];
    const image = (await this.run({ id: this.nextId++, display: job }, transfer)) as DisplayImage;
    // Structured cloning turns a Buffer into a plain Uint8Array.
    return { ...image, data: Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength) };
  }

  private run(request: CodecRequest, transfer: ArrayBuffer[]): Promise<CodecFrame | DisplayImage> {
    if (this.closed) return Promise.reject(new RenderError(503, 'the image decoders are shutting down'));
    if (this.queue.length >= this.options.maxQueue) {
      return Promise.reject(new RenderError(503, `${this.queue.length} frames are already waiting for a decoder; try again shortly`));
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ request, transfer, resolve, reject });
      this.dispatch();
    });
  }

  /** Stops every worker; frames still waiting or decoding fail with 503. */
  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) job.reject(new RenderError(503, 'the image decoders are shutting down'));
    await Promise.all(
      this.slots.splice(0).map((slot) => {
        if (slot.job) this.settle(slot, new RenderError(503, 'the image decoders are shutting down'));
        return slot.worker.terminate();
      }),
    );
  }

  /** Workers running now (started lazily, replaced after a failure). */
  get workers(): number {
    return this.slots.length;
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => !s.job);
      if (!slot) {
        if (this.slots.length >= this.options.size) return;
        slot = this.spawn();
      }
      const job = this.queue.shift()!;
      slot.job = job;
      slot.worker.ref();
      const target = slot;
      job.timer = setTimeout(() => {
        this.settle(target, new RenderError(503, `decoding the frame took longer than ${this.options.timeoutMs} ms; its decoder was stopped`));
        this.retire(target);
      }, this.options.timeoutMs);
      slot.worker.postMessage(job.request, job.transfer);
    }
  }

  private spawn(): Slot {
    const worker = startWorker(this.options.resourceLimits);
    const slot: Slot = { worker };
    worker.unref();
    worker.on('message', (response: CodecResponse) => {
      if (!slot.job || slot.job.request.id !== response.id) return;
      if ('frame' in response) this.settle(slot, undefined, response.frame);
      else if ('image' in response) this.settle(slot, undefined, response.image);
      else if (response.unavailable) this.settle(slot, new RenderError(500, `the image decoder is not available: ${response.error}`));
      else if (response.status) this.settle(slot, new RenderError(response.status, response.error));
      else this.settle(slot, new RenderError(422, `the frame does not decode: ${response.error}`));
      this.dispatch();
    });
    worker.on('error', (e: Error & { code?: string }) => {
      const reason = e.code === 'ERR_WORKER_OUT_OF_MEMORY' ? 'it ran out of memory' : e.message;
      this.settle(slot, new RenderError(500, `the image decoder stopped while decoding the frame: ${reason}`));
      this.retire(slot);
    });
    worker.on('exit', (code) => {
      this.settle(slot, new RenderError(500, `the image decoder stopped while decoding the frame (exit code ${code})`));
      this.retire(slot);
    });
    this.slots.push(slot);
    this.options.onWorker?.(worker);
    return slot;
  }

  /** Ends the slot's job, once, with a frame or an error. */
  private settle(slot: Slot, error?: RenderError, result?: CodecFrame | DisplayImage): void {
    const job = slot.job;
    if (!job) return;
    slot.job = undefined;
    clearTimeout(job.timer);
    if (!this.closed) slot.worker.unref();
    if (error) job.reject(error);
    else job.resolve(result!);
  }

  /** Drops a worker that failed; a fresh one starts when a frame needs it. */
  private retire(slot: Slot): void {
    const i = this.slots.indexOf(slot);
    if (i < 0) return;
    this.slots.splice(i, 1);
    void slot.worker.terminate();
    this.dispatch();
  }
}

/** True when the view is its whole buffer, which can then be transferred to a worker instead of copied. */
function owns(bytes: Uint8Array | DisplayJob['frame']['pixels']): boolean {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer;
}

/**
 * Under tsx or vitest this module is TypeScript, and so is the worker: Node 20 does not apply tsx's
 * loader inside worker threads, so a two-line bootstrap registers it there first.
 */
function startWorker(resourceLimits: ResourceLimits): Worker {
  const typescript = import.meta.url.endsWith('.ts');
  const entry = new URL(typescript ? './codec-worker.ts' : './codec-worker.js', import.meta.url);
  if (!typescript) return new Worker(entry, { resourceLimits });
  const tsx = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); });`;
  return new Worker(bootstrap, { eval: true, resourceLimits });
}

let shared: CodecPool | undefined;

/** The process's pool, started on first use. */
export function codecPool(): CodecPool {
  shared ??= new CodecPool();
  return shared;
}

/** Stops the process's codec workers; call on shutdown. A later decode starts a new pool. */
export async function closeCodecPool(): Promise<void> {
  const pool = shared;
  shared = undefined;
  await pool?.close();
}
