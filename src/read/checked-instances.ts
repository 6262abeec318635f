import { createHash, webcrypto } from 'node:crypto';
import type { Logger } from 'pino';
import type { Catalog, StoredInstance } from '../catalog/catalog.js';
import type { ObjectStore } from '../storage/object-store.js';
import { ObjectChanged, ObjectsDamaged, type Finding } from '../integrity/damage.js';

/** HEAD requests at once while checking a study: enough to overlap S3's latency, few enough to spare its connections. */
const PARALLEL_HEADS = 16;
/**
 * Objects up to this size are read whole and hashed off the event loop (WebCrypto's digest runs on libuv's pool):
 * a CT slice or an X-ray's frames cost the loop one write, not a SHA-256 pass, and several such reads run at once.
 */
export const READ_WHOLE_BYTES = 2 * 1024 * 1024;

/**
 * Whole instances read for sending (WADO-RS, WADO-URI), checked against what the index recorded at ingest
 * (DESIGN decision 11): every object's existence and size before the status goes out, and its SHA-256 while it
 * streams. Whatever is found is logged at error level and flagged in the index, where the admin API and verify see it.
 */
export class CheckedInstances {
  constructor(
    private readonly store: ObjectStore,
    private readonly catalog: Catalog,
    private readonly log: Logger,
  ) {}

  /** Throws ObjectsDamaged, naming each one, when any object is missing or has another size than recorded. */
  async assertPresent(instances: StoredInstance[]): Promise<void> {
    const findings: Finding[] = [];
    for (let i = 0; i < instances.length; i += PARALLEL_HEADS) {
      await Promise.all(
        instances.slice(i, i + PARALLEL_HEADS).map(async (instance) => {
          const found = await this.store.head(instance.objectKey);
          if (!found) findings.push(findingOf(instance, 'missing', 'its object is missing from the store'));
          else if (found.size !== instance.size) findings.push(findingOf(instance, 'changed', `its object holds ${found.size} bytes, not the ${instance.size} recorded at ingest`));
        }),
      );
    }
    if (findings.length === 0) return;
    await Promise.all(findings.map((f) => this.report(f, instances.find((x) => x.sopUid === f.sopUid)!.sha256)));
    throw new ObjectsDamaged(findings);
  }

  /**
   * The object's bytes, hashed as they go. The last chunk is held back until the whole has been hashed: a changed
   * object then ends in an ObjectChanged error before its last byte, so a client never receives a complete body
   * (Content-Length met, or a closed multipart) of bytes that are not those stored.
   */
  async *stream(instance: StoredInstance): AsyncGenerator<Uint8Array> {
    if (instance.size <= READ_WHOLE_BYTES) {
      // One byte past the recorded size: an object that grew is found changed, not read whole into memory.
      const body = await this.store.get(instance.objectKey, { offset: 0, length: instance.size + 1 });
      const whole = Buffer.concat(await body.toArray());
      await this.check(instance, whole.byteLength, Buffer.from(await webcrypto.subtle.digest('SHA-256', whole)).toString('hex'));
      yield whole;
      return;
    }
    const body = await this.store.get(instance.objectKey);
    const hash = createHash('sha256');
    let size = 0;
    let held: Uint8Array | undefined;
    for await (const chunk of body as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      size += chunk.byteLength;
      if (held) yield held;
      held = chunk;
    }
    await this.check(instance, size, hash.digest('hex'));
    if (held) yield held;
  }

  /** Throws ObjectChanged, once it is logged and flagged, when the bytes read are not those recorded. */
  private async check(instance: StoredInstance, size: number, sha256: string): Promise<void> {
    if (size !== instance.size || sha256 !== instance.sha256) {
      const detail = size !== instance.size ? `holds ${size} bytes, not the ${instance.size} recorded at ingest` : `has changed: its SHA-256 is ${sha256}, not the ${instance.sha256} recorded at ingest`;
      const finding = findingOf(instance, 'changed', detail);
      await this.report(finding, instance.sha256);
      throw new ObjectChanged(finding);
    }
  }

  private async report(finding: Finding, sha256: string): Promise<void> {
    this.log.error({ ...finding }, `stored instance damaged: ${finding.detail}; run verify, restore it from a backup or send it again`);
    // The finding is logged already; an index that cannot take the flag now does not hide it from the client.
    await this.catalog.markDamage(finding.sopUid, sha256, finding.damage).catch((err: unknown) => this.log.warn({ err, sopUid: finding.sopUid }, 'could not flag a damaged instance in the index'));
  }
}

function findingOf(instance: StoredInstance, damage: Finding['damage'], detail: string): Finding {
  return { studyUid: instance.studyUid, seriesUid: instance.seriesUid, sopUid: instance.sopUid, objectKey: instance.objectKey, damage, detail };
}
