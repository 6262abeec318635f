import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import fc from 'fast-check';
import { INPUT_SECONDS, bounded, keepCrash, type Target } from './harness.js';
import { TARGETS } from './targets/index.js';

/**
 * `npm run fuzz [target...]`: each target for FUZZ_SECONDS (60 by default) in a process of its own, watched from
 * here: an input that hangs the event loop or takes the process down is caught and kept like any other crash.
 * Crashes are written to test/fixtures/fuzz/ and replayed by `npm test` from then on; the exit status says if any.
 */

const SECONDS = Number(process.env.FUZZ_SECONDS ?? 60);
/** A child silent this long is stuck in one input: longer than the per-input bound, which then failed to fire. */
const WATCHDOG_MS = (INPUT_SECONDS * 2 + 5) * 1000;

type Message = { kind: 'input'; encoded: Uint8Array } | { kind: 'done'; runs: number; crash?: string; report?: string };

const child = process.env.FUZZ_TARGET;
if (child) await fuzzHere(TARGETS.find((t) => t.name === child)!);
else await fuzzAll(process.argv.slice(2));

async function fuzzHere(target: Target<unknown>): Promise<void> {
  const open = await target.open();
  const send = (m: Message) => new Promise<void>((resolve) => process.send!(m, () => resolve()));
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
  let runs = 0;
  const details = await fc.check(
    fc.asyncProperty(open.arbitrary, async (input) => {
      runs++;
      await send({ kind: 'input', encoded: open.encode(input) });
      await bounded((i) => open.check(i), input);
    }),
    { seed, numRuns: Number.MAX_SAFE_INTEGER, interruptAfterTimeLimit: SECONDS * 1000 },
  );
  await open.close();
  if (!details.failed || details.interrupted) return send({ kind: 'done', runs });
  const [input] = details.counterexample!;
  const crash = keepCrash(target, open.encode(input));
  const error = details.errorInstance as Error | undefined;
  const cause = error?.cause instanceof Error ? `\n  caused by ${error.cause.stack}` : '';
  await send({ kind: 'done', runs, crash, report: `seed ${seed}, path ${details.counterexamplePath}: ${String(error?.stack ?? error).slice(0, 2000)}${cause.slice(0, 2000)}` });
}

async function fuzzAll(names: string[]): Promise<void> {
  const unknown = names.filter((n) => !TARGETS.some((t) => t.name === n));
  if (unknown.length) {
    console.error(`unknown fuzz target ${unknown.join(', ')}; targets: ${TARGETS.map((t) => t.name).join(', ')}`);
    process.exit(2);
  }
  let crashes = 0;
  for (const target of TARGETS.filter((t) => names.length === 0 || names.includes(t.name))) {
    const started = Date.now();
    const outcome = await watch(target);
    console.log(`${target.name}: ${outcome.runs} inputs in ${Math.round((Date.now() - started) / 1000)} s${outcome.crash ? `, CRASH kept as ${path.relative(process.cwd(), outcome.crash)}\n  ${outcome.report}` : ', no crash'}`);
    if (outcome.crash) crashes++;
  }
  process.exit(crashes ? 1 : 0);
}

/** Runs one target in a child; a child that falls silent or dies leaves its last input behind as the crash. */
function watch(target: Target<unknown>): Promise<{ runs: number; crash?: string; report?: string }> {
  return new Promise((resolve) => {
    const worker: ChildProcess = fork(import.meta.filename, [], {
      env: { ...process.env, FUZZ_TARGET: target.name },
      execArgv: ['--import', 'tsx', '--max-old-space-size=1024'],
      serialization: 'advanced',
    });
    let last: Uint8Array | undefined;
    let runs = 0;
    let done = false;
    const lost = (why: string) => {
      done = true;
      clearTimeout(timer);
      const crash = last ? keepCrash(target, last) : undefined;
      resolve({ runs, crash, report: why });
    };
    let timer = setTimeout(() => lost('no progress'), WATCHDOG_MS);
    worker.on('message', (m: Message) => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        worker.kill('SIGKILL');
        lost(`one input ran for more than ${WATCHDOG_MS / 1000} s without yielding: a hang`);
      }, WATCHDOG_MS);
      if (m.kind === 'input') {
        last = m.encoded;
        runs++;
      } else {
        done = true;
        clearTimeout(timer);
        resolve({ runs: m.runs, crash: m.crash, report: m.report });
      }
    });
    worker.on('exit', (code, signal) => {
      if (!done) lost(`the fuzzing process died (${signal ?? `exit ${code}`}) on its last input, out of memory or worse`);
    });
  });
}
