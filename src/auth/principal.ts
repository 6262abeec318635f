import os from 'node:os';
/** Roles an API key can carry (DESIGN decision 8). */
export const ROLES = ['viewer-links', 'upload', 'read', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** What a route asks of its caller. */
export type Permission = 'read' | 'summaries' | 'viewer-links' | 'upload' | 'delete' | 'admin';

const GRANTS: Record<Role, readonly Permission[]> = {
  // The EMR: links to open a study, and enough of a study to know it is the right one.
  'viewer-links': ['viewer-links', 'summaries'],
  // Modalities and upload pages store and read nothing back.
  upload: ['upload'],
  read: ['read', 'summaries'],
  admin: ['read', 'summaries', 'viewer-links', 'upload', 'delete', 'admin'],
};

/** A patient as the index tells patients apart: PatientID within its IssuerOfPatientID ('' when none). */
export type PatientRef = { id: string; issuer: string };

/**
 * Who is asking: an API key, a viewer token for one study (and, with `patient`, that patient's other studies),
 * a signed-in member of staff (session cookie), or nobody on a LAN that allows anonymous reads.
 */
export type Principal =
  | { kind: 'key'; id: string; name: string; role: Role }
  | { kind: 'viewer-token'; jti: string; studyUid: string; patient?: PatientRef }
  | { kind: 'user'; id: string; login: string; roles: readonly Role[]; mustChangePassword: boolean }
  | { kind: 'anonymous' };

export function permits(principal: Principal, permission: Permission): boolean {
  switch (principal.kind) {
    case 'key':
      return GRANTS[principal.role].includes(permission);
    case 'viewer-token':
      return permission === 'read';
    case 'user':
      return principal.roles.some((role) => GRANTS[role].includes(permission));
    case 'anonymous':
      return permission === 'read' || permission === 'summaries';
  }
}

/** How the audit trail and the request log name a principal; never a secret. */
export function credentialLabel(principal: Principal | undefined): string {
  if (!principal) return 'none';
  if (principal.kind === 'key') return `key:${principal.id}`;
  if (principal.kind === 'viewer-token') return `token:${principal.jti}`;
  if (principal.kind === 'user') return `user:${principal.login}`;
  return 'anonymous';
}

/** How the audit trail and the upload log name whoever runs a command of the command line: its system user. */
export function commandLineCredential(): string {
  try {
    return `cli:${os.userInfo().username}`;
  } catch {
    // A container may run the command as a user without a name.
    return `cli:uid ${process.getuid?.() ?? '?'}`;
  }
}

/** The study a viewer token was issued for (its audit trail's study); readable-studies.ts says what else it may read. */
export function studyScope(principal: Principal | undefined): string | undefined {
  return principal?.kind === 'viewer-token' ? principal.studyUid : undefined;
}
