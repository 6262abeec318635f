import fc from 'fast-check';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { bounded, type OpenTarget } from './harness.js';
import { TARGETS } from './targets/index.js';

/**
 * A short fuzz run in every `npm test`: each target on a fixed seed (the same inputs every run) and on a fresh one,
 * printed by fast-check with the failing input when a run fails, so that it can be replayed. `npm run fuzz` runs
 * longer and keeps what it finds as fixtures.
 */
const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
const FIXED_SEED = 20261205;

for (const target of TARGETS) {
  describe(`fuzz: ${target.name}`, () => {
    let open: OpenTarget<unknown>;
    beforeAll(async () => {
      open = await target.open();
    });
    afterAll(async () => {
      await open?.close();
    });

    for (const [label, seed] of [['a fixed seed', FIXED_SEED], ['a random seed', Date.now() ^ (Math.random() * 2 ** 31)]] as const) {
      it(`survives ${RUNS} inputs from ${label} (${seed})`, async () => {
        await fc.assert(
          fc.asyncProperty(open.arbitrary, (input) => bounded((i) => open.check(i), input)),
          { seed, numRuns: RUNS },
        );
      });
    }
  });
}
