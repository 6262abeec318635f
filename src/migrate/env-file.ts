/** A line of the file that is not `NAME=value`; the value is never repeated, as it may be a password. */
export class EnvFileError extends Error {}

/**
 * The variables of an env file, read as docker compose and systemd read theirs: `NAME=value` lines, blank lines and
 * `#` comments skipped, an optional `export `, values optionally in single or double quotes. Nothing is expanded.
 */
export function parseEnvFile(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const [i, raw] of text.replace(/^\uFEFF/, '').split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) throw new EnvFileError(`line ${i + 1} is not NAME=value`);
    vars[m[1]!] = unquote(m[2]!);
  }
  return vars;
}

function unquote(value: string): string {
  const double = /^"((?:[^"\\]|\\.)*)"(\s+#.*)?$/.exec(value);
  if (double) return double[1]!.replace(/\\(["\\$`n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
  const single = /^'([^']*)'(\s+#.*)?$/.exec(value);
  if (single) return single[1]!;
  // Unquoted: a # after a space starts a comment, as in compose; a # inside a value (a password) does not.
  return value.replace(/\s+#.*$/, '');
}
