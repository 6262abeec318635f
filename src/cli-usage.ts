import { ROLES } from './auth/principal.js';
import { USER_ROLES } from './auth/users.js';

// The command line's usage, apart from the code of its commands: `help` prints it without loading them (src/cli.ts).

export const ACCESS_USAGE = `Access (run with the server's PACS_STORAGE_DIR and settings; safe while the server runs):
  keys create --role <${ROLES.join('|')}> --name "<who>" [--expires <days>d]
                    make an API key; it is printed once and never again
  keys list         every API key: id, role, name, hint, dates and status (never the key itself)
  keys revoke <id>  stop an API key from working, from the server's next request
  tokens revoke <jti | token | viewer link>
                    stop one viewer link from working
  tokens revoke-study <StudyInstanceUID>
                    stop every viewer link issued for a study so far; later links work
  signing-key rotate
                    sign new viewer links with a new key; earlier links work until they expire`;

export const USERS_USAGE = `Staff accounts (sign in at /login; safe while the server runs):
  users create --role <${USER_ROLES.join('|')}> [--role …] --name <login> [--display-name "<name>"]
                    make an account; prints a one-time password, to be changed at first sign-in
  users list        every account: login, display name, roles, status, last sign-in
  users roles <login> --role <${USER_ROLES.join('|')}> [--role …]
                    replace an account's roles; they apply from its next request
  users disable <login>
                    stop an account from signing in; its sessions end at once
  users enable <login>
                    let a disabled or locked-out account sign in again
  users reset-password <login>
                    print a new one-time password; the account's sessions end`;

export const AES_USAGE = `DICOM application entities, the callers the DICOM service knows (safe while the server runs):
  aes add <AE_TITLE> [--store] [--query] [--retrieve] [--host <name | address>] [--port <n>] [--description "<text>"]
                    let an AE title store, query and/or retrieve (name at least one), calling from --host only
                    (else from any address); --port is where it listens, for C-MOVE. Replaces one of that title.
  aes list          every known AE title: host, port, what it may do, when it was added
  aes remove <AE_TITLE>
                    forget an AE title (AE titles are case-sensitive)`;

export const BACKUP_USAGE = `Backups:
  backup --to <folder | env file> [--parallel <n>]
                    copy what the backup lacks of this environment's store: every instance (verified against
                    its SHA-256 on the way), API keys, revocations, the audit trail and the viewer signing key,
                    from one consistent snapshot of the index. A folder becomes a files + SQLite store; an env
                    file names a bucket (PACS_S3_*, AWS_*) and the folder for its index (PACS_STORAGE_DIR).
                    Safe while the server runs; run it again after an interruption: it skips what is there.
  restore --from <folder | env file> [--parallel <n>]
                    bring a backup back into the empty store this environment names (as for the server)`;

export const MIGRATE_USAGE = `Moving the store (filesystem/SQLite <-> S3/Postgres, any to any):
  migrate --to-env <file> [--parallel <n>]
                    copy every instance, API key, revocation and the audit trail from the store this
                    environment names (as for the server) to the one named in <file> (PACS_STORAGE_DIR,
                    PACS_S3_*, AWS_*, PACS_DATABASE_URL lines); each object is verified against its SHA-256.
                    Only reads the source: safe while the server runs. Run it again to resume or catch up.
  migrate --from-env <file> [--parallel <n>]
                    the same the other way round: from the store named in <file> to this environment's`;

export const USAGE = `usage: npm run cli -- <command>
  import <folder>   store every DICOM file found under the folder (by content, not by name)
  verify            check every indexed object against its SHA-256 (flagging what is missing or changed), index
                    unindexed objects that are instances and move the rest under quarantine/
  help              this text

${BACKUP_USAGE}

${MIGRATE_USAGE}

${ACCESS_USAGE}

${USERS_USAGE}

${AES_USAGE}`;
