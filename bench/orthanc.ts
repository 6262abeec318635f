import { execFileSync } from 'node:child_process';
import { constants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { assertLoopbackOnly, freePort, spawnServer, type RunningServer } from './server-process.js';
import type { Settings } from './settings.js';

/** A remote DICOMweb server Orthanc can act as a client of (plugin option DicomWeb.Servers). */
export type DicomWebServer = { Url: string; HttpHeaders?: Record<string, string> };

/**
 * Orthanc's own DICOM network service: its port (on loopback, like all it opens here), its AE title, and the remote
 * application entities it knows by name (DicomModalities: AE title, host, port), to send to and to move to.
 */
export type OrthancDicom = { port: number; aeTitle: string; modalities: Record<string, [aeTitle: string, host: string, port: number]> };

/**
 * What else an Orthanc is started with: the DICOMweb servers it is a client of, its DICOM service, and variables added
 * to its environment (not its configuration), such as TCP_NODELAY for the dcmtk inside it.
 */
export type OrthancOptions = { dicomWebServers?: Record<string, DicomWebServer>; dicom?: OrthancDicom; env?: Readonly<Record<string, string>> };

/**
 * Orthanc's configuration for the comparison: its defaults, except where they would make it do more
 * (or less) work than PACS-lite for the same answers. Written out in full so the report can quote it.
 */
export function orthancConfig(opts: { dataDir: string; port: number; dicomWebPlugin: string } & OrthancOptions) {
  return {
    Name: 'pacs-lite-bench',
    StorageDirectory: path.join(opts.dataDir, 'storage'),
    IndexDirectory: path.join(opts.dataDir, 'index'),
    HttpPort: opts.port,
    // No DICOM port unless a case compares or tests DIMSE; then any caller may store, as Orthanc's default is.
    DicomServerEnabled: opts.dicom !== undefined,
    ...(opts.dicom ? { DicomPort: opts.dicom.port, DicomAet: opts.dicom.aeTitle, DicomModalities: opts.dicom.modalities, DicomAlwaysAllowStore: true } : {}),
    // Loopback only, and no credentials: Orthanc as most clinics run it behind a viewer. PACS-lite, which
    // cannot be run without access control, is sent an API key on every request, so its figures include
    // checking it (the cost is measured apart, in the access-control table).
    RemoteAccessAllowed: false,
    AuthenticationEnabled: false,
    Plugins: [opts.dicomWebPlugin],
    DicomWeb: {
      Enable: true,
      Root: '/dicom-web/',
      EnableWado: false,
      // Full metadata is what OHIF needs; the cheaper MainDicomTags mode would not draw the images.
      SeriesMetadata: 'Full',
      StudiesMetadata: 'Full',
      // PACS-lite matches person names case-insensitively; so must Orthanc, for the same answers.
      QidoCaseSensitive: false,
      ...(opts.dicomWebServers ? { Servers: opts.dicomWebServers } : {}),
    },
    // Files are stored as received by both (Orthanc's default, stated because it matters most).
    StorageCompression: false,
    // Both make an acknowledged instance durable: Orthanc fsyncs each file (its default).
    SyncStorageArea: true,
    // Orthanc's default. Its performance advice, 'Never' (answer finds from the index only), made no
    // measurable difference to these queries with DICOMweb plugin 1.7.
    StorageAccessOnFind: 'Always',
    // Jobs are not used; not persisting them saves index writes.
    SaveJobs: false,
    OverwriteInstances: false,
    HttpCompressionEnabled: true,
    KeepAlive: true,
    TcpNoDelay: true,
  };
}

/** An Orthanc process: its REST API at `url`. */
export type OrthancProcess = { url: string; version: string; pid: number; stop(): Promise<void> };

/** Where Orthanc, its DICOMweb plugin and the repository (for loopback-bind.c) are. */
export type OrthancInstall = Pick<Settings, 'root' | 'orthanc' | 'orthancDicomWeb'>;

/** Orthanc with the DICOMweb plugin, on a loopback port, with its storage and index in `workDir`. */
export async function startOrthanc(settings: Settings, workDir: string): Promise<RunningServer> {
  const orthanc = await runOrthanc(settings, workDir);
  return { name: 'orthanc', version: orthanc.version, dicomweb: `${orthanc.url}/dicom-web`, auth: {}, pid: orthanc.pid, stop: orthanc.stop };
}

/** startOrthanc's process itself; `options` make it a DICOMweb client and a DICOM peer too (the tests use it so). */
export async function runOrthanc(install: OrthancInstall, workDir: string, options: OrthancOptions = {}): Promise<OrthancProcess> {
  for (const file of [install.orthanc, install.orthancDicomWeb]) {
    await fs.access(file, constants.R_OK).catch(() => {
      throw new Error(`${file} is missing: install Debian's orthanc and orthanc-dicomweb (or set BENCH_ORTHANC, BENCH_ORTHANC_DICOMWEB)`);
    });
  }
  const port = await freePort();
  const dataDir = path.join(workDir, 'orthanc-data');
  await fs.mkdir(dataDir, { recursive: true });
  const configFile = path.join(workDir, 'orthanc.json');
  await fs.writeFile(configFile, JSON.stringify(orthancConfig({ dataDir, port, dicomWebPlugin: install.orthancDicomWeb, ...options }), null, 2));
  const shim = compileLoopbackShim(install.root, workDir);
  const url = `http://127.0.0.1:${port}`;
  const server = await spawnServer({
    command: install.orthanc,
    args: [configFile],
    cwd: workDir,
    env: { ...process.env, ...options.env, LD_PRELOAD: shim },
    logFile: path.join(workDir, 'orthanc.log'),
    readyUrl: `${url}/system`,
  });
  try {
    await assertLoopbackOnly(port);
    return { url, version: await orthancVersion(url), pid: server.pid, stop: server.stop };
  } catch (e) {
    await server.stop();
    throw e;
  }
}

/** Builds loopback-bind.c (see there why) into workDir; a C compiler is the one extra tool this needs. */
function compileLoopbackShim(root: string, workDir: string): string {
  const output = path.join(workDir, 'loopback-bind.so');
  try {
    execFileSync('cc', ['-shared', '-fPIC', '-O2', '-o', output, path.join(root, 'bench/loopback-bind.c'), '-ldl'], { stdio: 'pipe' });
  } catch (e) {
    throw new Error(`cannot build bench/loopback-bind.c, which keeps Orthanc on 127.0.0.1 (install gcc): ${(e as Error).message}`);
  }
  return output;
}

async function orthancVersion(url: string): Promise<string> {
  const system = (await (await fetch(`${url}/system`)).json()) as { Version: string };
  const plugin = (await (await fetch(`${url}/plugins/dicom-web`)).json()) as { Version: string };
  return `Orthanc ${system.Version}, DICOMweb plugin ${plugin.Version}`;
}
