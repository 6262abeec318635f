import sharp from 'sharp';
import { imageSize, type Corpus, type CorpusInstance } from './corpus.js';
import { decodedBody, request, type Reply } from './http.js';
import { percentile } from './measure.js';
import { BROWSER, scrolled, type ReadProbe } from './reads.js';
import type { Scenario } from './scenario.js';
import type { RunningServer } from './server-process.js';

/**
 * The rendering lines (issue 5): WADO-RS `…/instances/{i}/rendered` of a CT slice and of a large CR, each call
 * asking for an instance that neither server has rendered before, and `…/thumbnail` of one instance asked again
 * and again. Every answer must be a JPEG of the expected size that is not blank. See bench/README.md.
 */
export const RENDER_LINES = ['ctRendered', 'crRendered', 'thumbnail'] as const;
export type RenderLine = (typeof RENDER_LINES)[number];

/**
 * The box a thumbnail fits in: PACS-lite's size when no viewport is asked for (THUMBNAIL_SIZE in
 * src/dicomweb/rendered.ts), and the viewport Orthanc is asked for when it has no thumbnail resource.
 */
export const THUMBNAIL_BOX = 128;
/** The issue's "a cached thumbnail answers in a few milliseconds", as a bound on PACS-lite's median. */
export const THUMBNAIL_TARGET_MS = 5;
/** The smallest CR the CR line takes: the generated corpus's 24 CR images are 2048×2048. */
const LARGE_CR_PIXELS = 2048 * 2048;
/** After an uncached line, this many of its instances are asked for again (not in its figures), to show what a cache does. */
const ASKED_AGAIN = 5;
const JPEG = 'image/jpeg';

type Target = { instance: CorpusInstance; columns: number; rows: number };

/** What the rendering lines ask for, chosen from the corpus before either server starts. */
export type RenderPlan = {
  ct?: { targets: Target[]; label: string; description: string };
  cr?: { targets: Target[]; label: string; description: string };
  thumbnail?: { target: Target; label: string; description: string };
};

/** One answer, as checked: its size in bytes and pixels, and its mean grey level (how it was windowed). */
export type ImageFacts = { bytes: number; width: number; height: number; channels: number; meanGrey: number; contentEncoding?: string };

/** Recorded with each rendering line, beside its samples, in the JSON. */
export type RenderDetail = {
  /** The resource asked for, below `…/instances/{i}`. */
  endpoint: string;
  accept: string;
  /** Distinct instances asked for, the untimed first included (uncached lines). */
  instancesAsked?: number;
  /** The thumbnail line's one instance. */
  instance?: string;
  /** The answer to the first call. */
  firstImage?: ImageFacts;
  /** Uncached lines: some of the same instances asked for a second time, once the line is done; not in its figures. */
  askedAgainMs?: number[];
  askedAgainMedianMs?: number;
};

/**
 * Chooses the instances of the rendering lines. `reps` timed calls and one untimed need as many distinct instances;
 * a line gets fewer calls when the corpus has fewer (the generated corpus has 24 CR images of 2048×2048 at scale 1,
 * 2 at scale 0.05).
 */
export async function renderPlan(corpus: Corpus, scenario: Scenario, reps: number): Promise<RenderPlan> {
  const calls = reps + 1;
  const plan: RenderPlan = {};
  const ct = await ctPool(corpus, scenario, reps);
  if (ct.pool.length >= 2) {
    const targets = await sized(corpus, ct.pool.slice(0, calls));
    const { columns, rows } = targets[0]!;
    plan.ct = {
      targets,
      label: `CT ${columns}×${rows} rendered JPEG, uncached`,
      description: `${targets.length} CT ${columns}×${rows} instances, ${ct.origin}, each asked once${targets.length < calls ? ` (the corpus has no more: ${plural(targets.length - 1, 'timed call')})` : ''}`,
    };
  }
  const cr = await largeCr(corpus, calls);
  if (cr.length >= 2) {
    const { columns, rows } = cr[0]!;
    plan.cr = {
      targets: cr,
      label: `CR ${columns}×${rows} rendered JPEG, uncached`,
      description: `${cr.length} CR ${cr.every((t) => t.columns === columns && t.rows === rows) ? `${columns}×${rows} instances` : `instances of 2048×2048 pixels or more, ${columns}×${rows} the largest`}, each asked once${cr.length < calls ? ` (the corpus has no more: ${plural(cr.length - 1, 'timed call')})` : ''}`,
    };
  }
  // An instance the CT line does not ask for, if there is one; the thumbnail is another rendering anyway.
  const thumbnailInstance = ct.pool[calls] ?? ct.pool.at(-1) ?? scenario.series.instances[Math.floor(scenario.series.instances.length / 2)]!;
  const [target] = await sized(corpus, [thumbnailInstance]);
  plan.thumbnail = {
    target: target!,
    label: `${thumbnailInstance.modality} ${target!.columns}×${target!.rows} thumbnail, cached`,
    description: `${thumbnailInstance.file}, the same instance on every call, the first (untimed) rendering it`,
  };
  return plan;
}

/**
 * The CT slices to render: those of the largest CT image size, from the series other than the metadata and frame
 * lines' first (Orthanc's metadata line reads every file of that series and its frame line parses some, and Orthanc
 * keeps recently parsed files); then, if that is not enough, the instances of that series the frame line does not ask for.
 */
async function ctPool(corpus: Corpus, scenario: Scenario, reps: number): Promise<{ pool: CorpusInstance[]; origin: string }> {
  const bySeries = new Map<string, CorpusInstance[]>();
  for (const instance of corpus.instances) {
    if (instance.modality !== 'CT' || instance.frames !== 1) continue;
    const series = bySeries.get(instance.seriesUid);
    if (series) series.push(instance);
    else bySeries.set(instance.seriesUid, [instance]);
  }
  if (bySeries.size === 0) return { pool: [], origin: '' };
  // Headers are read for series whose files could hold the largest images only (the corpus has hundreds of small CT studies).
  const largestFile = Math.max(...[...bySeries.values()].map((s) => s[0]!.size));
  const sizes = new Map<string, number>();
  for (const [uid, series] of bySeries) {
    if (series[0]!.size < largestFile / 2) continue;
    const { columns, rows } = await imageSize(corpus, series[0]!);
    sizes.set(uid, columns * rows);
  }
  const largest = Math.max(...sizes.values());
  const chosen = [...sizes].filter(([, pixels]) => pixels === largest).map(([uid]) => uid);
  const others = chosen.filter((uid) => uid !== scenario.series.seriesUid).flatMap((uid) => bySeries.get(uid)!);
  if (others.length > reps || !chosen.includes(scenario.series.seriesUid)) {
    return { pool: others, origin: `of ${chosen.length - (chosen.includes(scenario.series.seriesUid) ? 1 : 0)} series other than the metadata and frame lines'` };
  }
  const framed = new Set(Array.from({ length: reps + 1 }, (_, i) => scrolled(scenario.series.instances, i).sopUid));
  const unread = scenario.series.instances.filter((i) => !framed.has(i.sopUid));
  return {
    pool: [...others, ...unread],
    origin: `${others.length ? `of other series, then ` : ''}of the metadata series that the frame line does not ask for`,
  };
}

/** The CR images of at least 2048×2048, largest first. */
async function largeCr(corpus: Corpus, calls: number): Promise<Target[]> {
  const candidates = corpus.instances.filter((i) => i.modality === 'CR' && i.frames === 1 && i.size >= LARGE_CR_PIXELS);
  const large = (await sized(corpus, candidates)).filter((t) => t.columns * t.rows >= LARGE_CR_PIXELS);
  return large.sort((a, b) => b.columns * b.rows - a.columns * a.rows).slice(0, calls);
}

const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

async function sized(corpus: Corpus, instances: CorpusInstance[]): Promise<Target[]> {
  const targets: Target[] = [];
  for (const instance of instances) targets.push({ instance, ...(await imageSize(corpus, instance)) });
  return targets;
}

/** The read lines of the plan, to run after the others. */
export function renderProbes(plan: RenderPlan): ReadProbe[] {
  return [
    ...(plan.ct ? [uncachedProbe('ctRendered', plan.ct.targets)] : []),
    ...(plan.cr ? [uncachedProbe('crRendered', plan.cr.targets)] : []),
    ...(plan.thumbnail ? [thumbnailProbe(plan.thumbnail.target)] : []),
  ];
}

const instanceUrl = (server: RunningServer, i: CorpusInstance) => `${server.dicomweb}/studies/${i.studyUid}/series/${i.seriesUid}/instances/${i.sopUid}`;
const ask = (server: RunningServer, url: string) => request(url, { headers: { ...server.auth, ...BROWSER, Accept: JPEG } });

/** `…/rendered` at full size, another instance on each call; the i-th call asks for the i-th target. */
function uncachedProbe(key: RenderLine, targets: Target[]): ReadProbe {
  const first = new Map<string, ImageFacts>();
  const once = async (server: RunningServer, i: number) => {
    const t = targets[i]!;
    const reply = await ask(server, `${instanceUrl(server, t.instance)}/rendered`);
    const facts = await expectJpeg(reply, [{ width: t.columns, height: t.rows }], `rendered ${t.instance.file}`);
    if (i === 0) first.set(server.dicomweb, facts);
    return reply.ms;
  };
  return {
    key,
    maxCalls: targets.length,
    once,
    async after(server, calls): Promise<RenderDetail> {
      const again: number[] = [];
      for (let i = 1; i < Math.min(calls, 1 + ASKED_AGAIN); i++) again.push(await once(server, i));
      return {
        endpoint: '/rendered',
        accept: JPEG,
        instancesAsked: calls,
        firstImage: first.get(server.dicomweb),
        askedAgainMs: again,
        askedAgainMedianMs: percentile(again, 0.5),
      };
    },
  };
}

/**
 * `…/thumbnail` of one instance, again and again. Orthanc's DICOMweb plugin 1.7 has no thumbnail resource (404):
 * its `…/rendered?viewport=128,128` stands in, for reference, and Orthanc renders it anew each time.
 */
function thumbnailProbe(t: Target): ReadProbe {
  const endpoints = new Map<string, string>();
  const first = new Map<string, ImageFacts>();
  const stand_in = `/rendered?viewport=${THUMBNAIL_BOX},${THUMBNAIL_BOX}`;
  return {
    key: 'thumbnail',
    async once(server, i) {
      const base = instanceUrl(server, t.instance);
      let endpoint = i === 0 ? '/thumbnail' : endpoints.get(server.dicomweb)!;
      let reply = await ask(server, base + endpoint);
      if (i === 0 && server.name === 'orthanc' && reply.status === 404) reply = await ask(server, base + (endpoint = stand_in));
      if (i === 0) endpoints.set(server.dicomweb, endpoint);
      const sizes = [fitInside(t, THUMBNAIL_BOX), ...(endpoint === stand_in ? [{ width: THUMBNAIL_BOX, height: THUMBNAIL_BOX }] : [])];
      const facts = await expectJpeg(reply, sizes, `${endpoint} of ${t.instance.file}`);
      if (i === 0) first.set(server.dicomweb, facts);
      return reply.ms;
    },
    async after(server): Promise<RenderDetail> {
      return { endpoint: endpoints.get(server.dicomweb)!, accept: JPEG, instance: t.instance.file, firstImage: first.get(server.dicomweb) };
    },
  };
}

/** Scaled to fit inside box × box, aspect ratio kept, never enlarged. */
function fitInside(t: Target, box: number): { width: number; height: number } {
  const scale = Math.min(1, box / t.columns, box / t.rows);
  return { width: Math.max(1, Math.round(t.columns * scale)), height: Math.max(1, Math.round(t.rows * scale)) };
}

/**
 * Throws unless the answer is a 200 with Content-Type image/jpeg whose body starts as a JPEG file does, decodes
 * in full, measures one of `sizes` and is not blank (every pixel the same), so that a fast error never counts.
 */
export async function expectJpeg(reply: Reply, sizes: Array<{ width: number; height: number }>, what: string): Promise<ImageFacts> {
  const body = decodedBody(reply);
  if (reply.status !== 200) throw new Error(`${what}: HTTP ${reply.status} ${body.toString('utf8', 0, 300)}`);
  const type = reply.headers['content-type'] ?? '';
  if (!/^image\/jpeg\s*(;|$)/i.test(type)) throw new Error(`${what}: Content-Type "${type}", not ${JPEG}`);
  if (body.length < 3 || body[0] !== 0xff || body[1] !== 0xd8 || body[2] !== 0xff) {
    throw new Error(`${what}: the ${body.length} bytes answered do not start as a JPEG file does (FF D8 FF)`);
  }
  // A full decode (stats) as well as the header (metadata): a truncated or corrupt file fails here.
  const [meta, stats] = await Promise.all([sharp(body).metadata(), sharp(body).stats()]).catch((e: unknown) => {
    throw new Error(`${what}: the JPEG answered cannot be decoded: ${(e as Error).message}`);
  });
  if (meta.format !== 'jpeg') throw new Error(`${what}: sharp reads the answer as ${meta.format}, not jpeg`);
  if (!sizes.some((s) => s.width === meta.width && s.height === meta.height)) {
    throw new Error(`${what}: the image is ${meta.width}×${meta.height}, not ${sizes.map((s) => `${s.width}×${s.height}`).join(' or ')}`);
  }
  if (stats.channels.every((c) => c.min === c.max)) throw new Error(`${what}: a blank ${meta.width}×${meta.height} image, every pixel ${stats.channels[0]?.min}`);
  const encoding = reply.headers['content-encoding'];
  return {
    bytes: body.length,
    width: meta.width,
    height: meta.height,
    channels: meta.channels,
    meanGrey: stats.channels.slice(0, 3).reduce((n, c) => n + c.mean, 0) / Math.min(3, stats.channels.length),
    ...(encoding ? { contentEncoding: encoding } : {}),
  };
}
