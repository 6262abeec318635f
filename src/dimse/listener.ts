import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import dimse from 'dcmjs-dimse';
import type { Config } from '../config.js';
import type { Services } from '../context.js';
import { tlsFiles } from '../https.js';
import { knownCaller, normalise } from '../auth/application-entities.js';
import { markConnected } from './dcmjs-dimse.js';
import { DicomAssociation } from './scp.js';

const { RejectResult, RejectSource, RejectReason } = dimse.constants;

/** PDUs other than P-DATA-TF (association requests, releases, aborts): a few KB in practice. */
const MAX_CONTROL_PDU = 1024 * 1024;
const P_DATA_TF = 0x04;
const ARTIM_MS = 30_000;

/** The DICOM network service as it runs: where it listens (plain, and over TLS when configured), and how to stop it. */
export type DicomListener = { port?: number; tlsPort?: number; close(): Promise<void> };

/**
 * Listens for DICOM associations on PACS_DICOM_PORT (PS3.8): at most `maxAssociations` at once (the next one is
 * rejected as a local limit, not left hanging), each aborted after `timeoutSeconds` of silence, and none allowed a PDU
 * larger than it was told to send (dcmjs-dimse would buffer a PDU of any declared length).
 */
export async function startDicomListener(services: Services, settings: NonNullable<Config['dicom']>, host: string): Promise<DicomListener> {
  const { log, ingest, auth } = services;
  dimse.Implementation.setMaxPduLength(settings.maxPdu);
  // The library's own log goes to the console; what matters of it reaches ours as errors and events.
  dimse.log.setLevel('silent');
  const open = new Set<Socket>();
  const deps = {
    ingest,
    uploads: services.uploads,
    catalog: services.catalog,
    reads: services.reads,
    log,
    aeTitle: settings.aeTitle,
    acceptUnknown: settings.acceptUnknown,
    audit: (event: Parameters<typeof auth.audit.record>[0]) => auth.audit.record(event),
    knownCaller: (aeTitle: string, address: string) => knownCaller(services.catalog, aeTitle, address),
  };
  const accept = (socket: Socket) => {
    // Each C-STORE waits for its response: Nagle's algorithm would hold every small response back for an ACK.
    socket.setNoDelay(true);
    const address = normalise(socket.remoteAddress ?? '');
    const fromThere = [...open].filter((s) => normalise(s.remoteAddress ?? '') === address).length;
    const busy = open.size >= settings.maxAssociations || fromThere >= settings.maxAssociationsPerAddress;
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    // Before the association's own listener, so that it sees each chunk first.
    guardPdus(socket, settings.maxPdu, () => association, (reason) => {
      log.warn({ address: socket.remoteAddress, reason }, 'DICOM connection closed');
      socket.destroy();
    });
    const association: DicomAssociation = busy ? new BusyAssociation(socket, deps) : new DicomAssociation(socket, deps);
    // PS3.8 9.1.5 ARTIM: a connection that is not an accepted association within this long is closed, trickle or not.
    const artim = setTimeout(() => {
      if (association.accepted) return;
      log.warn({ address: socket.remoteAddress }, 'DICOM connection closed: no association within 30 s');
      socket.destroy();
    }, ARTIM_MS).unref();
    socket.once('close', () => clearTimeout(artim));
    markConnected(association);
    association.on('networkError', (err: Error) => {
      log.debug({ err, address: socket.remoteAddress }, 'DICOM network error');
      socket.destroy();
    });
    socket.once('close', () => association.connectionClosed());
    socket.setTimeout(settings.timeoutSeconds * 1000, () => {
      log.warn({ address: socket.remoteAddress, seconds: settings.timeoutSeconds }, 'DICOM association silent too long: aborted');
      association.sendAbort();
      socket.destroy();
    });
  };
  const plain = settings.port === undefined ? undefined : await listening(net.createServer(accept), settings.port, host);
  // DICOM over TLS (PS3.15 B.1): the same service behind a TLS handshake; TLS 1.2 at least (BCP 195).
  const secure = settings.tls && (await listening(tls.createServer({ ...tlsFiles({ certFile: settings.tls.certFile, keyFile: settings.tls.keyFile }), minVersion: 'TLSv1.2' }, accept), settings.tls.port, host));
  const port = plain ? (plain.address() as net.AddressInfo).port : undefined;
  const tlsPort = secure ? (secure.address() as net.AddressInfo).port : undefined;
  log.info({ port, tlsPort, host, aeTitle: settings.aeTitle }, 'DICOM listening');
  return {
    port,
    tlsPort,
    close: async () => {
      for (const socket of open) socket.destroy();
      await Promise.all([plain, secure].map((server) => server && new Promise((resolve) => server.close(resolve))));
    },
  };
}

function listening<T extends net.Server>(server: T, port: number, host: string): Promise<T> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

/** Refuses every association: the server holds as many as it may, or as many from that address. */
class BusyAssociation extends DicomAssociation {
  override associationRequested(): void {
    this.reject(RejectReason.LocalLimitExceeded, RejectResult.Transient, RejectSource.ServiceProviderPresentation);
  }
}

/** A command message (PS3.7 E): a few hundred bytes in practice. */
const MAX_COMMAND = 64 * 1024;
/** A data set that is not a C-STORE's (a C-FIND or C-MOVE identifier, which dcmjs-dimse gathers whole in memory). */
const MAX_IDENTIFIER = 1024 * 1024;

/** What the guard needs to know of the association its bytes are for. */
type GuardedAssociation = { accepted: boolean; storing: boolean };

/**
 * Reads the PDU headers (PS3.8 9.3: type, reserved, 32-bit length) and, in P-DATA-TF, the PDV item headers (length,
 * context, command or data set, last fragment) as the bytes go by, and calls `refuse` at the first step past a limit:
 * a P-DATA-TF longer than the maximum PDU length this server announced (any other PDU past 1 MB), P-DATA before the
 * association is accepted, a command message past 64 KB, a data set other than a C-STORE's past 1 MB. dcmjs-dimse
 * would buffer any of them whole, however large.
 */
function guardPdus(socket: Socket, maxPdu: number, association: () => GuardedAssociation | undefined, refuse: (reason: string) => void): void {
  let header = Buffer.alloc(0);
  let pduType = 0;
  let pduLeft = 0;
  let item = Buffer.alloc(0);
  let itemLeft = 0;
  const message = { command: 0, dataSet: 0 };
  socket.on('data', (chunk: Buffer) => {
    let at = 0;
    while (at < chunk.length) {
      if (pduLeft === 0) {
        const take = Math.min(6 - header.length, chunk.length - at);
        header = Buffer.concat([header, chunk.subarray(at, at + take)]);
        at += take;
        if (header.length < 6) return;
        [pduType, pduLeft] = [header[0]!, header.readUInt32BE(2)];
        header = Buffer.alloc(0);
        const limit = pduType === P_DATA_TF ? maxPdu : MAX_CONTROL_PDU;
        if (pduLeft > limit) return refuse(`a PDU of type ${pduType} declares ${pduLeft} bytes, more than the ${limit} allowed`);
        if (pduType === P_DATA_TF && !association()?.accepted) return refuse('P-DATA came before the association was accepted');
        continue;
      }
      if (pduType !== P_DATA_TF || itemLeft > 0) {
        const skip = Math.min(pduType === P_DATA_TF ? itemLeft : pduLeft, chunk.length - at);
        if (pduType === P_DATA_TF) itemLeft -= skip;
        pduLeft -= skip;
        at += skip;
        continue;
      }
      const take = Math.min(6 - item.length, chunk.length - at, pduLeft);
      item = Buffer.concat([item, chunk.subarray(at, at + take)]);
      at += take;
      pduLeft -= take;
      if (item.length < 6) {
        if (pduLeft === 0) return refuse('a PDV item header is cut at the end of its PDU');
        continue;
      }
      const [fragment, control] = [item.readUInt32BE(0) - 2, item[5]!];
      item = Buffer.alloc(0);
      if (fragment < 0 || fragment > pduLeft) return refuse('a PDV item runs past the end of its PDU');
      const kind = control & 1 ? 'command' : 'dataSet';
      message[kind] += fragment;
      const limit = kind === 'command' ? MAX_COMMAND : association()?.storing ? Number.POSITIVE_INFINITY : MAX_IDENTIFIER;
      if (message[kind] > limit) return refuse(`a ${kind === 'command' ? 'command' : 'data set other than a C-STORE\'s'} runs past ${limit} bytes`);
      if (control & 2) message[kind] = 0;
      itemLeft = fragment;
    }
  });
}
