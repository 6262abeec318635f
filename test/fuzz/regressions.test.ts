import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { FIXTURES, bounded, keptCrashes, type OpenTarget } from './harness.js';
import { TARGETS } from './targets/index.js';

/** Every input a fuzz run once crashed on (test/fixtures/fuzz/<target>-<hash>.*), replayed against its target. */
for (const target of TARGETS) {
  const kept = keptCrashes(target);
  describe.skipIf(kept.length === 0)(`fuzz regressions: ${target.name}`, () => {
    let open: OpenTarget<unknown>;
    beforeAll(async () => {
      open = await target.open();
    });
    afterAll(async () => {
      await open?.close();
    });
    for (const file of kept) {
      it(`survives ${file}`, async () => {
        await bounded((i) => open.check(i), open.decode(fs.readFileSync(path.join(FIXTURES, file))));
      });
    }
  });
}
