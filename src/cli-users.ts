import { parseArgs } from 'node:util';
import { AuthFailures } from './auth/auth-failures.js';
import { Users, userStatus } from './auth/users.js';
import type { Role } from './auth/principal.js';
import { openCatalog } from './catalog/open.js';
import { printable, table, utc } from './cli-access.js';
import { USERS_USAGE } from './cli-usage.js';
import { loadConfig } from './config.js';
import { HttpError } from './errors.js';

/** Runs `users …`; sets the exit code: 1 when refused, 2 on bad usage. */
export async function runUsersCommand(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  const config = loadConfig();
  const catalog = await openCatalog(config);
  const users = new Users(catalog.users(), config.signInLockout, new AuthFailures(config.authFailuresPerMinute));
  try {
    switch (sub) {
      case 'create':
        return await create(users, rest);
      case 'list':
        return await list(users);
      case 'roles':
        return await roles(users, rest);
      case 'disable':
      case 'enable': {
        const login = one(rest);
        await users.setDisabled(login, sub === 'disable');
        console.log(sub === 'disable' ? `Disabled ${login}: their sessions ended, and they cannot sign in.` : `Enabled ${login}: they can sign in again.`);
        return;
      }
      case 'reset-password': {
        const login = one(rest);
        const password = await users.resetPassword(login);
        console.log(`New one-time password for ${login}:\n\n    ${password}\n\nIt must be changed at the next sign-in; their sessions ended.`);
        return;
      }
      default:
        console.error(`${sub ? `unknown command: users ${sub}` : 'users needs a subcommand'}\n\n${USERS_USAGE}`);
        process.exitCode = 2;
    }
  } catch (e) {
    if (!(e instanceof HttpError)) throw e;
    console.error(e.message);
    process.exitCode = e.status === 400 ? 2 : 1;
  } finally {
    await catalog.close();
  }
}

async function create(users: Users, args: string[]) {
  const { values } = parseArgs({ args, options: { role: { type: 'string', multiple: true }, name: { type: 'string' }, 'display-name': { type: 'string' } }, strict: true });
  const { user, password } = await users.create({ login: values.name ?? '', displayName: values['display-name'], roles: rolesOf(values.role) });
  console.log(`User ${user.login} (${user.roles.join(', ')}) created. One-time password:\n\n    ${password}\n`);
  console.log('It works for one sign-in at /login, where it must be changed. It is not shown again.');
}

async function roles(users: Users, args: string[]) {
  const { values, positionals } = parseArgs({ args, options: { role: { type: 'string', multiple: true } }, allowPositionals: true, strict: true });
  const user = await users.setRoles(one(positionals), rolesOf(values.role));
  console.log(`${user.login} now has the roles ${user.roles.join(', ')}.`);
}

/** `--role read --role upload` or `--role read,upload`. */
function rolesOf(given: string[] | undefined): Role[] {
  return (given ?? []).flatMap((r) => r.split(',')) as Role[];
}

async function list(users: Users) {
  const all = await users.list();
  if (all.length === 0) {
    console.log('No users yet. Make one with: npm run cli -- users create --role admin --name <login>');
    return;
  }
  const now = Date.now();
  console.log(
    table(
      ['LOGIN', 'DISPLAY NAME', 'ROLES', 'CREATED', 'LAST SIGN-IN', 'STATUS'],
      all.map((u) => [u.login, printable(u.displayName), u.roles.join(','), utc(u.createdAt), u.lastSignInAt === null ? 'never' : utc(u.lastSignInAt), userStatus(u, now)]),
    ),
  );
}

function one(args: string[]): string {
  if (args.length !== 1) throw new HttpError(400, 'usage', `name one login\n\n${USERS_USAGE}`);
  return args[0]!;
}
