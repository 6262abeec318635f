import fs from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import fc from 'fast-check';

/**
 * What every fuzz target promises for any input: it returns, or throws one of its module's own typed errors; it
 * ends (bounded time per input) and holds bounded memory. Anything else is a crash, kept as a fixture file under
 * test/fixtures/fuzz/ and replayed by test/fuzz/regressions.test.ts ever after.
 */

export type Target<I> = {
  name: string;
  /** What a fixture of this target is, as a file name ending: `.dcm`, `.json`, `.txt`. */
  extension: string;
  open(): Promise<OpenTarget<I>>;
};

export type OpenTarget<I> = {
  arbitrary: fc.Arbitrary<I>;
  /** Feeds one input; throws only when the module broke its promise. */
  check(input: I): Promise<void>;
  encode(input: I): Buffer;
  decode(file: Buffer): I;
  close(): Promise<void>;
};

type ErrorClass = abstract new (...args: never[]) => Error;

/** The module broke its promise: an error it does not declare, or a result that breaks its contract. */
export class Crash extends Error {
  override name = 'Crash';
}

/**
 * Runs `work`; an error of one of `allowed` is the module refusing the input, as it should. The cause of any
 * other is kept, so the report shows the stack where it was thrown.
 */
export async function refusesOnlyWith<R>(allowed: ErrorClass[], work: () => R | Promise<R>): Promise<R | undefined> {
  try {
    return await work();
  } catch (e) {
    if (allowed.some((type) => e instanceof type)) return undefined;
    throw new Crash(`threw ${describe(e)}, not one of ${allowed.map((t) => t.name).join(', ')}`, { cause: e });
  }
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.constructor.name}: ${e.message.slice(0, 300)}` : String(e);
}

/** Past this, one input is a hang: nothing a server does with a few hundred KB of input should take seconds. */
export const INPUT_SECONDS = Number(process.env.FUZZ_INPUT_SECONDS ?? 10);
/** Heap and buffers one input may leave held; the inputs are at most a few MB. */
export const MEMORY_BYTES = 768 * 1024 * 1024;

/** `check` with the time and memory bounds; a synchronous hang is caught by the runner's watchdog instead. */
export async function bounded<I>(check: (input: I) => Promise<void>, input: I): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Crash(`one input took more than ${INPUT_SECONDS} s`)), INPUT_SECONDS * 1000);
  });
  try {
    await Promise.race([check(input), hang]);
  } finally {
    clearTimeout(timer);
  }
  const { heapUsed, arrayBuffers } = process.memoryUsage();
  if (heapUsed + arrayBuffers > MEMORY_BYTES) {
    throw new Crash(`after one input, ${Math.round((heapUsed + arrayBuffers) / 2 ** 20)} MiB of heap and buffers are held (bound ${MEMORY_BYTES / 2 ** 20} MiB)`);
  }
}

export const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/fuzz');

/** Keeps a failing input as test/fixtures/fuzz/<target>-<hash><ext>; the regression suite replays it from then on. */
export function keepCrash(target: Target<unknown>, encoded: Uint8Array): string {
  const file = path.join(FIXTURES, `${target.name}-${createHash('sha256').update(encoded).digest('hex').slice(0, 12)}${target.extension}`);
  fs.mkdirSync(FIXTURES, { recursive: true });
  fs.writeFileSync(file, encoded);
  return file;
}

/** The fixtures kept for a target, by file name. */
export function keptCrashes(target: Target<unknown>): string[] {
  if (!fs.existsSync(FIXTURES)) return [];
  return fs
    .readdirSync(FIXTURES)
    .filter((f) => f.startsWith(`${target.name}-`) && f.endsWith(target.extension))
    .sort();
}
