import type { Context } from 'hono';

/**
 * The DICOMweb root as clients reach it (DESIGN decision 5): the configured public URL, else the
 * request's own origin as corrected by a reverse proxy's X-Forwarded-* headers.
 */
export function dicomwebRoot(c: Context, publicUrl: string | undefined): string {
  if (publicUrl) return `${publicUrl}/dicom-web`;
  const url = new URL(c.req.url);
  const proto = c.req.header('x-forwarded-proto')?.split(',')[0]?.trim() || url.protocol.replace(':', '');
  const host = c.req.header('x-forwarded-host')?.split(',')[0]?.trim() || c.req.header('host') || url.host;
  const prefix = (c.req.header('x-forwarded-prefix') ?? '').replace(/\/+$/, '');
  return `${proto}://${host}${prefix}/dicom-web`;
}

/** Stored JSON keeps BulkDataURIs relative to the root so that one copy serves every public URL. */
export function absolutizeBulkData(json: string, root: string): string {
  return json.replaceAll('"BulkDataURI":"', `"BulkDataURI":"${root}/`);
}
