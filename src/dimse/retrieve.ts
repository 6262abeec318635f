import net from 'node:net';
import dimse from 'dcmjs-dimse';
import type { Logger } from 'pino';
import type { Catalog, Scope, StoredInstance } from '../catalog/catalog.js';
import { MAX_VALUES_PER_KEY } from '../catalog/qido.js';
import { isValidUid } from '../dicom/uid.js';
import type { ReadService } from '../read/read-service.js';
import { forgetAnswered, Network, type NetworkPeer } from './dcmjs-dimse.js';
import { sendDataSet } from './p-data.js';
import { DimseStatus, errorComment, hex } from './status.js';

const { Dataset } = dimse;
const { Status, PresentationContextResult } = dimse.constants;
const { CMoveResponse, CGetResponse } = dimse.responses;
const { CStoreRequest, CMoveRequest } = dimse.requests;
const { Association } = dimse.association;

type Association = dimse.association.Association;
type RetrieveRequest = dimse.requests.CMoveRequest | dimse.requests.CGetRequest;
type RetrieveResponse = dimse.responses.CMoveResponse | dimse.responses.CGetResponse;

/** Patient Root and Study Root MOVE and GET (PS3.4 C.6.1.3, C.6.2.3); dcmjs-dimse names only the Study Root ones. */
export const RETRIEVE_CLASSES = new Set(['1.2.840.10008.5.1.4.1.2.1.2', '1.2.840.10008.5.1.4.1.2.1.3', '1.2.840.10008.5.1.4.1.2.2.2', '1.2.840.10008.5.1.4.1.2.2.3']);

/** An association proposes at most 128 presentation contexts (odd IDs 1 to 255, PS3.8 9.3.2.2). */
const MAX_CONTEXTS = 128;


function respond(request: RetrieveRequest, status: number, comment?: string): RetrieveResponse {
  const response = request instanceof CMoveRequest ? CMoveResponse.fromRequest(request) : CGetResponse.fromRequest(request);
  // fromRequest names the Study Root class whatever the request's.
  response.setAffectedSopClassUid(request.getAffectedSopClassUid());
  response.setStatus(status);
  if (comment) response.setErrorComment(errorComment(comment));
  return response;
}

/** An association sub-operations go over: its peer (dcmjs-dimse), what was negotiated, and its connection. */
type Target = { peer: NetworkPeer; association: Association; connection: net.Socket };

/** What a retrieve needs of the server: which instances are stored and where destinations are, their bytes, our name. */
export type RetrieveDeps = {
  catalog: Pick<Catalog, 'storedInstances' | 'applicationEntity'>;
  reads: Pick<ReadService, 'instanceStream'>;
  aeTitle: string;
  log: Logger;
};

/** The final answer to a retrieve, and what the audit trail says of it. */
export type RetrieveOutcome = { response: RetrieveResponse; studyUids: string[]; query?: string };

/** The identifier names no instances this way (PS3.4 C.4.2.2.1): refused with 0xA900 and this message. */
class IdentifierError extends Error {}

/**
 * The data set of a C-STORE sub-operation as dcmjs-dimse sees it: empty, so that it sends the command alone; the
 * stored bytes follow through sendDataSet (p-data.ts), streamed rather than held whole in memory.
 */
class StreamedDataSet extends Dataset {
  constructor(instance: StoredInstance) {
    super({ SOPClassUID: instance.sopClassUid, SOPInstanceUID: instance.sopUid }, instance.transferSyntaxUid);
  }

  override getDenaturalizedDataset(): Buffer {
    return Buffer.alloc(0);
  }
}

/**
 * One C-MOVE (to a known application entity, over an association of our own) or C-GET (back over the requester's
 * association, on the storage contexts it offered the SCP role for, PS3.4 C.4.3): a C-STORE sub-operation per stored
 * instance, the data set sent exactly as stored, a pending response after each, and a final status that counts the
 * failures and names them. An instance whose stored syntax the receiver did not accept fails; nothing is converted.
 * Each data set is streamed from the store as it is read and checked, a few PDUs in memory at a time.
 */
export class Retrieval {
  private cancelled = false;

  constructor(
    private readonly deps: RetrieveDeps,
    /** The requester's association, where C-GET sub-operations go, and whether it may retrieve at all. */
    private readonly requester: Target & { aeTitle: string; mayRetrieve: boolean },
  ) {}

  /** C-CANCEL (PS3.4 C.4.2.3.2): no sub-operation starts after it, and the final status says Cancel. */
  cancel(): void {
    this.cancelled = true;
  }

  /** Answers `request`: each pending response through `pending`, the final one returned; it never throws. */
  async run(request: RetrieveRequest, pending: (response: RetrieveResponse) => void): Promise<RetrieveOutcome> {
    if (!this.requester.mayRetrieve) return { response: respond(request, DimseStatus.NotAuthorized, `${this.requester.aeTitle} may not retrieve`), studyUids: [] };
    try {
      return await this.answer(request, pending);
    } catch (err) {
      this.deps.log.error({ err, callingAeTitle: this.requester.aeTitle }, 'a retrieve could not be completed');
      return { response: respond(request, DimseStatus.UnableToProcess, 'the retrieve could not be completed; try again'), studyUids: [] };
    }
  }

  private async answer(request: RetrieveRequest, pending: (response: RetrieveResponse) => void): Promise<RetrieveOutcome> {
    const move = request instanceof CMoveRequest;
    let scopes: Scope[];
    try {
      scopes = scopesOf(request.getDataset());
    } catch (err) {
      if (!(err instanceof IdentifierError)) throw err;
      return { response: respond(request, DimseStatus.IdentifierDoesNotMatch, err.message), studyUids: [] };
    }
    const studyUids = [...new Set(scopes.map((s) => s.studyUid))];
    const destination = move ? trimmed(request.getCommandDataset().getElement('MoveDestination')) : undefined;
    const query = destination === undefined ? undefined : `to ${destination}`;
    const known = destination === undefined ? undefined : await this.deps.catalog.applicationEntity(destination);
    if (destination !== undefined && (!known?.host || !known.port)) {
      return { response: respond(request, DimseStatus.MoveDestinationUnknown, `${destination} is not a known AE with a host and port`), studyUids, query };
    }
    const instances = unique((await Promise.all(scopes.map((scope) => this.deps.catalog.storedInstances(scope)))).flat());
    const counts = { remaining: instances.length, completed: 0, warnings: 0, failed: [] as string[] };
    const withCounts = (response: RetrieveResponse, final: boolean) => {
      if (!final || response.getStatus() === Status.Cancel) response.setRemaining(counts.remaining);
      response.setCompleted(counts.completed);
      response.setWarnings(counts.warnings);
      response.setFailures(counts.failed.length);
      return response;
    };
    let target: Target & { release(): Promise<void> };
    try {
      target = known && instances.length > 0 ? await openAssociation(known.host!, known.port!, this.deps.aeTitle, known.aeTitle, instances) : { ...this.requester, release: async () => {} };
    } catch (err) {
      this.deps.log.warn({ err, destination, callingAeTitle: this.requester.aeTitle }, 'C-MOVE destination could not be reached');
      counts.failed = instances.map((i) => i.sopUid);
      counts.remaining = 0;
      return { response: this.final(withCounts(respond(request, DimseStatus.UnableToPerformSuboperations, `${destination} could not be reached`), true), counts.failed, request), studyUids, query };
    }
    try {
      for (const instance of instances) {
        if (this.cancelled) break;
        counts.remaining--;
        const status = await this.store(target, instance, move ? { aeTitle: this.requester.aeTitle, messageId: request.getMessageId() } : undefined);
        if (status === Status.Success) counts.completed++;
        else if ((status & 0xf000) === 0xb000) counts.warnings++;
        else counts.failed.push(instance.sopUid);
        if (counts.remaining > 0 && !this.cancelled) pending(withCounts(respond(request, Status.Pending), false));
      }
    } finally {
      await target.release();
    }
    const status = this.cancelled && counts.remaining > 0 ? Status.Cancel : counts.failed.length === 0 && counts.warnings === 0 ? Status.Success : counts.completed + counts.warnings === 0 ? DimseStatus.UnableToPerformSuboperations : DimseStatus.SuboperationsWithFailures;
    return { response: this.final(withCounts(respond(request, status), true), counts.failed, request), studyUids, query };
  }

  /** PS3.4 C.4.2.1.5: a final response after failures names them in FailedSOPInstanceUIDList. */
  private final(response: RetrieveResponse, failed: string[], request: RetrieveRequest): RetrieveResponse {
    if (failed.length === 0) return response;
    // A UI value's length is 16 bits in Explicit VR: a list that would pass it is cut (the count says how many failed).
    let length = 0;
    const listed = failed.filter((uid) => (length += uid.length + 1) <= 0xfffe);
    response.setDataset(new Dataset({ FailedSOPInstanceUIDList: listed }, request.getDataset()?.getTransferSyntaxUid()));
    return response;
  }

  /** One C-STORE sub-operation: its status, or a failure status when it could not be sent as stored. */
  private async store(target: Target, instance: StoredInstance, moveOriginator?: { aeTitle: string; messageId: number }): Promise<number> {
    const log = { sopInstanceUid: instance.sopUid, transferSyntaxUid: instance.transferSyntaxUid, callingAeTitle: this.requester.aeTitle };
    // A C-GET stores back only on storage contexts the requester took the SCP role for (PS3.4 C.4.3.1).
    if (!acceptsAsStored(target.association, instance, moveOriginator === undefined)) {
      this.deps.log.warn(log, 'retrieve sub-operation failed: the receiver accepted no context for the stored SOP class and transfer syntax');
      return Status.ProcessingFailure;
    }
    // A connection aborted by an earlier sub-operation takes no more.
    if (target.connection.destroyed) return Status.ProcessingFailure;
    // The first bytes are read before the command goes: an object that cannot be read at all fails alone.
    const chunks = dataSetOf(this.deps.reads.instanceStream(instance));
    let first: IteratorResult<Uint8Array>;
    try {
      first = await chunks.next();
    } catch (err) {
      this.deps.log.error({ ...log, err }, 'retrieve sub-operation failed: the stored instance could not be read');
      return Status.ProcessingFailure;
    }
    const request = new CStoreRequest(new StreamedDataSet(instance));
    if (moveOriginator) {
      const command = request.getCommandDataset();
      command.setElement('MoveOriginatorApplicationEntityTitle', moveOriginator.aeTitle);
      // dcmjs-dimse types element values as text; a US value is a number.
      command.setElement('MoveOriginatorMessageID', moveOriginator.messageId as unknown as string);
    }
    const answered = new Promise<number>((resolve, reject) => {
      const gone = () => reject(new Error('the association closed before the C-STORE was answered'));
      target.peer.once('close', gone);
      request.once('response', (response: dimse.responses.CStoreResponse) => {
        target.peer.removeListener('close', gone);
        resolve(response.getStatus());
      });
    });
    answered.catch(() => undefined);
    // The command goes now, written by dcmjs-dimse; the data set after it, from the store.
    target.peer.sendRequests(request);
    const context = target.association.getAcceptedPresentationContextFromRequest(request)!;
    try {
      await sendDataSet(target.connection, context.getPresentationContextId(), resumed(first, chunks), target.association.getMaxPduLength());
    } catch (err) {
      // Half a data set cannot be taken back: the association is aborted, and the receiver keeps nothing of it.
      this.deps.log.error({ ...log, err }, 'retrieve sub-operation failed: the stored instance could not be sent whole; the association is aborted');
      target.peer.sendAbort();
      target.connection.destroy();
      return Status.ProcessingFailure;
    }
    const status = await answered;
    forgetAnswered(target.peer, request);
    if (status !== Status.Success) this.deps.log.warn({ ...log, status: hex(status) }, 'retrieve sub-operation answered with a failure or warning');
    return status;
  }
}

/**
 * The scopes an identifier names (PS3.4 C.4.2.2.1, hierarchical): its level's unique key, which may be a list, below
 * the single unique keys of the levels above. PATIENT level is not retrieved: ask for the patient's studies.
 */
function scopesOf(identifier: dimse.Dataset | undefined): Scope[] {
  const level = trimmed(identifier?.getElement('QueryRetrieveLevel'));
  const uids = (keyword: string) => {
    const value = identifier?.getElement(keyword) as unknown;
    const list = (Array.isArray(value) ? value : [value]).flatMap((v) => (typeof v === 'string' ? v.split('\\') : [])).map((v) => v.trim()).filter((v) => v !== '');
    if (list.length === 0) throw new IdentifierError(`${keyword} is needed at ${level} level`);
    if (list.length > MAX_VALUES_PER_KEY) throw new IdentifierError(`${keyword}: at most ${MAX_VALUES_PER_KEY} UIDs at once`);
    const bad = list[list.findIndex((uid) => !isValidUid(uid))];
    if (bad !== undefined) throw new IdentifierError(`${keyword} ${bad.slice(0, 40)} is not a UID`);
    return list;
  };
  const one = (keyword: string) => {
    const [uid, ...more] = uids(keyword);
    if (more.length > 0) throw new IdentifierError(`${keyword}: one UID above the ${level} level`);
    return uid!;
  };
  switch (level) {
    case 'STUDY':
      return uids('StudyInstanceUID').map((studyUid) => ({ studyUid }));
    case 'SERIES': {
      const studyUid = one('StudyInstanceUID');
      return uids('SeriesInstanceUID').map((seriesUid) => ({ studyUid, seriesUid }));
    }
    case 'IMAGE': {
      const [studyUid, seriesUid] = [one('StudyInstanceUID'), one('SeriesInstanceUID')];
      return uids('SOPInstanceUID').map((sopUid) => ({ studyUid, seriesUid, sopUid }));
    }
    default:
      throw new IdentifierError(`QueryRetrieveLevel ${level || '(none)'}: STUDY, SERIES or IMAGE`);
  }
}

/** True when the association has an accepted context for the instance's SOP class in its stored syntax. */
function acceptsAsStored(association: Association, instance: StoredInstance, scpRoleNeeded: boolean): boolean {
  const contexts = association.getPresentationContexts().map(({ context }) => context).filter((c) => c.getAbstractSyntaxUid() === instance.sopClassUid);
  // dcmjs-dimse records a role selection on the first context of its SOP class only; it holds for all of them.
  if (scpRoleNeeded && !contexts.some((c) => c.getProviderRole())) return false;
  return contexts.some((c) => c.getResult() === PresentationContextResult.Accept && c.getAcceptedTransferSyntaxUid() === instance.transferSyntaxUid);
}

/**
 * An association to a C-MOVE destination, proposing one presentation context per SOP class and stored transfer
 * syntax so that each instance can go as stored (dcmjs-dimse's Client would propose one per SOP class, and convert).
 */
async function openAssociation(host: string, port: number, callingAeTitle: string, calledAeTitle: string, instances: StoredInstance[]): Promise<Target & { release(): Promise<void> }> {
  const association = new Association(callingAeTitle, calledAeTitle);
  const pairs = new Set(instances.map((i) => `${i.sopClassUid} ${i.transferSyntaxUid}`));
  for (const pair of [...pairs].slice(0, MAX_CONTEXTS)) {
    const [sopClassUid, transferSyntaxUid] = pair.split(' ') as [string, string];
    association.addTransferSyntaxToPresentationContext(association.addPresentationContext(sopClassUid), transferSyntaxUid);
  }
  const socket = net.connect({ host, port });
  socket.setNoDelay(true);
  const peer = new Network(socket);
  try {
    await new Promise<void>((resolve, reject) => {
      peer.once('connect', () => peer.sendAssociationRequest(association));
      peer.once('associationAccepted', () => resolve());
      peer.once('associationRejected', () => reject(new Error(`${calledAeTitle} rejected the association`)));
      peer.once('networkError', (err: Error) => reject(err));
      peer.once('close', () => reject(new Error(`${calledAeTitle} closed the connection`)));
    });
  } catch (err) {
    socket.destroy();
    throw err;
  }
  return {
    peer,
    association,
    connection: socket,
    release: () =>
      new Promise<void>((resolve) => {
        if (socket.destroyed) return resolve();
        // A destination that does not answer the release within 10 s is left: the sub-operations are done.
        const timer = setTimeout(() => socket.destroy(), 10_000);
        socket.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
        peer.once('associationReleaseResponse', () => socket.end());
        peer.sendAssociationReleaseRequest();
      }),
  };
}

/** Group 0002 elements of these VRs have a 4-byte length after 2 reserved bytes (PS3.5 7.1.2). */
const LONG_VRS = new Set(['OB', 'OW', 'OF', 'SQ', 'UT', 'UN']);
/** A file meta information longer than this is not one (a few hundred bytes in practice). */
const MAX_META = 64 * 1024;

/** A stored Part 10 file's data set, what travels over the network: the bytes after its file meta information. */
async function* dataSetOf(file: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let head = Buffer.alloc(0);
  let start: number | undefined;
  for await (const chunk of file) {
    if (start !== undefined) {
      yield chunk;
      continue;
    }
    head = Buffer.concat([head, chunk]);
    start = metaEnd(head);
    if (start === undefined && head.length > MAX_META) throw new Error('the stored file\'s meta information does not end');
    if (start !== undefined && head.length > start) yield head.subarray(start);
  }
  if (start === undefined) throw new Error('the stored file ends inside its meta information');
}

/** Where the file meta information (after the preamble and "DICM") ends; undefined while `head` does not tell yet. */
function metaEnd(head: Buffer): number | undefined {
  for (let at = 132; ; ) {
    if (head.length < at + 8) return undefined;
    if (head.readUInt16LE(at) !== 0x0002) return at;
    if (!LONG_VRS.has(head.toString('latin1', at + 4, at + 6))) at += 8 + head.readUInt16LE(at + 6);
    else if (head.length < at + 12) return undefined;
    else at += 12 + head.readUInt32LE(at + 8);
  }
}

async function* resumed(first: IteratorResult<Uint8Array>, rest: AsyncGenerator<Uint8Array>): AsyncGenerator<Uint8Array> {
  if (first.done) return;
  yield first.value;
  yield* rest;
}

/** The same instance named twice (a UID listed twice) is sent once. */
function unique(instances: StoredInstance[]): StoredInstance[] {
  return [...new Map(instances.map((i) => [i.sopUid, i])).values()];
}

function trimmed(value: unknown): string {
  return typeof value === 'string' ? value.trim() : '';
}
