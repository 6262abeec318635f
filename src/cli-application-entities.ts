import { parseArgs, type ParseArgsConfig } from 'node:util';
import { aeTitleOf, applicationEntityOf } from './auth/application-entities.js';
import type { ApplicationEntity } from './catalog/catalog.js';
import { auditCli, printable, table, utc, withAccess } from './cli-access.js';
import { AES_USAGE } from './cli-usage.js';
import { BadRequest, HttpError, NotFound } from './errors.js';

/** Runs `aes …`; sets the exit code: 1 when refused, 2 on bad usage. */
export async function runAesCommand(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  try {
    switch (sub) {
      case 'add':
        return await add(rest);
      case 'list':
        options(rest, {}, 0);
        return await withAccess(({ catalog }) => catalog.applicationEntities().then(list));
      case 'remove':
        return await remove(rest);
      default:
        throw usage(sub ? `unknown command: aes ${printable(sub)}` : 'aes needs a subcommand');
    }
  } catch (e) {
    if (!(e instanceof HttpError)) throw e;
    console.error(e.message);
    process.exitCode = e.status === 400 ? 2 : 1;
  }
}

async function add(args: string[]) {
  const { values, positionals } = options(
    args,
    { host: { type: 'string' }, port: { type: 'string' }, store: { type: 'boolean' }, query: { type: 'boolean' }, retrieve: { type: 'boolean' }, description: { type: 'string' } },
    1,
  );
  const { store = false, query = false, retrieve = false, port } = values;
  // No flag is no default: granting all three by omission would open retrieval to a modality that only stores.
  if (!store && !query && !retrieve) throw usage('aes add needs at least one of --store, --query, --retrieve: what the application entity may do');
  const ae = applicationEntityOf({
    aeTitle: positionals[0]!,
    host: values.host ?? null,
    port: port === undefined ? null : /^\d+$/.test(port) ? Number(port) : NaN,
    store,
    query,
    retrieve,
    description: values.description ?? null,
  });
  await withAccess(async ({ catalog, records }) => {
    const known = await catalog.applicationEntity(ae.aeTitle);
    const stored = await catalog.putApplicationEntity(ae);
    const detail = new URLSearchParams({ ae: stored.aeTitle, may: maySay(stored), host: stored.host ?? '', port: String(stored.port ?? '') });
    await auditCli(records, 'aes add', detail.toString());
    console.log(`${known ? 'Replaced' : 'Added'} application entity ${stored.aeTitle}: it may ${maySay(stored)}, calling from ${stored.host ?? 'any address'}${stored.port === null ? '' : `, listening on port ${stored.port}`}.`);
  });
}

function list(all: ApplicationEntity[]) {
  if (all.length === 0) {
    console.log('No application entities yet. Add one with: npm run cli -- aes add <AE_TITLE> --store [--query] [--retrieve] [--host <address>] [--port <n>]');
    return;
  }
  const rows = all.map((ae) => [ae.aeTitle, ae.host ?? 'any', ae.port === null ? '-' : String(ae.port), maySay(ae), utc(ae.createdAt), printable(ae.description ?? '')]);
  console.log(table(['AE TITLE', 'HOST', 'PORT', 'MAY', 'ADDED', 'DESCRIPTION'], rows));
  console.log(`\n${all.length} application entit${all.length === 1 ? 'y' : 'ies'}. Times are UTC.`);
}

async function remove(args: string[]) {
  const title = aeTitleOf(options(args, {}, 1).positionals[0]!);
  await withAccess(async ({ catalog, records }) => {
    if (!(await catalog.removeApplicationEntity(title))) throw new NotFound(`No application entity has the AE title "${title}" (AE titles are case-sensitive); \`npm run cli -- aes list\` shows them.`);
    await auditCli(records, 'aes remove', new URLSearchParams({ ae: title }).toString());
    console.log(`Removed application entity ${title}.`);
  });
}

/** What the entity may do, as the list and the audit trail say it. */
function maySay(ae: ApplicationEntity): string {
  return (['store', 'query', 'retrieve'] as const).filter((may) => ae[may]).join(',') || 'nothing';
}

/** The options and exactly `count` positional arguments, or the usage. */
function options<O extends NonNullable<ParseArgsConfig['options']>>(args: string[], config: O, count: number) {
  let parsed;
  try {
    parsed = parseArgs({ args, options: config, allowPositionals: true, strict: true });
  } catch (e) {
    throw usage((e as Error).message);
  }
  if (parsed.positionals.length !== count) throw usage(count === 0 ? `unexpected argument: ${printable(parsed.positionals[0]!)}` : 'name one AE title (quoted if it holds spaces)');
  return parsed;
}

function usage(message: string): BadRequest {
  return new BadRequest(`${message}\n\n${AES_USAGE}`);
}
