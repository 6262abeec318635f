/** Probes until it finds something (not undefined or false), every 100 ms, failing past `timeoutMs` with `what`. */
export async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  for (const started = Date.now(); ; ) {
    const found = await probe();
    if (found !== undefined && found !== false) return found;
    if (Date.now() - started > timeoutMs) throw new Error(`waited ${timeoutMs} ms for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
