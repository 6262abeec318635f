import { PassThrough, Writable } from 'node:stream';
import type { Socket } from 'node:net';
import dimse from 'dcmjs-dimse';
import type { Logger } from 'pino';
import { randomUUID } from 'node:crypto';
import type { Permissions } from '../auth/application-entities.js';
import type { AuditEvent } from '../auth/records.js';
import type { Catalog } from '../catalog/catalog.js';
import { isKnownTransferSyntax } from '../dicom/transfer-syntax.js';
import { DiskFull } from '../errors.js';
import { fileMetaInformation } from '../dicom/write.js';
import { IngestBatch, type IngestDeps, type InstanceOutcome } from '../ingest/ingest.js';
import { UploadTally, type UploadLog } from '../ingest/upload-log.js';
import type { ReadService } from '../read/read-service.js';
import { encodeCommandSet } from './command-set.js';
import { receivedBytes } from './dcmjs-dimse.js';
import { answerFind, QUERY_CLASSES } from './find.js';
import { pDataMessage } from './p-data.js';
import { Retrieval, RETRIEVE_CLASSES } from './retrieve.js';
import { DimseStatus, errorComment, hex } from './status.js';

const { Scp, Dataset } = dimse;
const { Status, PresentationContextResult, RejectResult, RejectSource, RejectReason } = dimse.constants;
const { CEchoResponse, CFindResponse, CStoreResponse } = dimse.responses;

type Association = dimse.association.Association;
type PresentationContext = dimse.association.PresentationContext;
type CStoreRequest = dimse.requests.CStoreRequest;
type CFindRequest = dimse.requests.CFindRequest;
type CMoveRequest = dimse.requests.CMoveRequest;
type CGetRequest = dimse.requests.CGetRequest;
type RetrieveResponse = dimse.responses.CMoveResponse | dimse.responses.CGetResponse;

const VERIFICATION = '1.2.840.10008.1.1';
/** Abstract syntaxes this service serves to some callers. */
const SERVED: Array<(uid: string) => boolean> = [(uid) => uid.startsWith('1.2.840.10008.5.1.4.1.1.'), (uid) => QUERY_CLASSES.has(uid), (uid) => RETRIEVE_CLASSES.has(uid)];
/** Storage SOP classes live under this root (PS3.4 B.5); others (query, worklist, print…) are not storage. */
const STORAGE_ROOT = '1.2.840.10008.5.1.4.1.1.';
const UNCOMPRESSED = ['1.2.840.10008.1.2.1', '1.2.840.10008.1.2'];
/** CommandField (0000,0100) of a C-FIND response (PS3.7 9.3.2.2). */
const C_FIND_RSP = 0x8020;
/** CommandDataSetType (0000,0800) of a message with a data set: anything but 0x0101 (PS3.7 E.1); dcmjs-dimse's value. */
const DATA_SET_PRESENT = 0x0202;
/** C-FIND matches written to the socket together; a C-CANCEL is heeded between two such writes. */
const MATCHES_A_WRITE = 16;


/** What an SCP needs of the server: the ingest path, who may call, and the audit trail. */
export type ScpDeps = {
  ingest: IngestDeps;
  uploads: UploadLog;
  /** What C-FIND searches. */
  catalog: Catalog;
  /** The stored bytes C-MOVE and C-GET send. */
  reads: Pick<ReadService, 'instanceStream'>;
  log: Logger;
  aeTitle: string;
  /** What a known application entity calling from an address it may call from may do; undefined when unknown there. */
  knownCaller(aeTitle: string, address: string): Promise<Permissions | undefined>;
  acceptUnknown: boolean;
  audit(event: AuditEvent): void;
};

/** The parts of an audit event a DICOM operation fills in; the association fills in who and where. */
type Operation = { method: string; status: number; studyUid?: string; sopUid?: string; query?: string };

/**
 * One association of the DICOM network service (PS3.7, PS3.8), on dcmjs-dimse's PDU and DIMSE handling. Each C-STORE
 * is streamed into the same ingest as a STOW-RS part (spooled, hashed, parsed, durable, indexed) before its response
 * says Success; what dcmjs-dimse parses decides nothing about what is stored.
 */
export class DicomAssociation extends Scp {
  private caller = '';
  /** Names the association in the log and the audit trail, as a request id names an HTTP request. */
  private readonly id = randomUUID();
  private known = false;
  private permissions: Permissions = { store: false, query: false, retrieve: false };
  /** The C-STORE being received: its ingest batch and receipt, set when its data set starts to arrive. */
  private receiving: { batch: IngestBatch; receipt: ReturnType<IngestBatch['add']>; body: PassThrough } | undefined;
  /** C-FINDs under way, by message ID, each flagged when a C-CANCEL names it. */
  private readonly finds = new Map<number, { cancelled: boolean }>();
  /** As negotiated: C-GET stores back on its storage contexts. */
  private association: Association | undefined;
  /** C-MOVEs and C-GETs under way, by message ID, for C-CANCEL. */
  private readonly retrievals = new Map<number, Retrieval>();
  /** Set once the association is accepted: before it, and after a rejection, no P-DATA may come (listener.ts). */
  accepted = false;
  /** Set at the association request (dcmjs-dimse's own `association` field is set before it is handed on). */
  private requested = false;
  /** What its C-STOREs stored and refused: one record in the upload log when the association ends. */
  private tally: UploadTally | undefined;

  /** True while a C-STORE's data set is arriving: the one data set whose size only PACS_MAX_INSTANCE_BYTES bounds. */
  get storing(): boolean {
    return this.receiving !== undefined;
  }

  constructor(
    private readonly socket: Socket,
    private readonly deps: ScpDeps,
  ) {
    // The library's own timers are not relied on (listener.ts times associations out); its PDU timeout would abort a
    // long C-STORE that ingest is still committing.
    super(socket, { pduTimeout: 24 * 3600 * 1000 });
  }

  override associationRequested(association: Association): void {
    // PS3.8 9.2: one association per connection; a second request while one is open is a protocol error.
    if (this.requested) {
      this.deps.log.warn({ callingAeTitle: this.caller, address: this.socket.remoteAddress }, 'a second association request on an open association: aborted');
      this.sendAbort();
      this.socket.destroy();
      return;
    }
    this.requested = true;
    void this.negotiate(association).catch((err: unknown) => {
      this.deps.log.error({ err }, 'a DICOM association request could not be answered');
      this.sendAbort();
    });
  }

  private async negotiate(association: Association): Promise<void> {
    this.association = association;
    this.caller = association.getCallingAeTitle().trim();
    const called = association.getCalledAeTitle().trim();
    const address = this.socket.remoteAddress ?? '';
    const who = { callingAeTitle: this.caller, calledAeTitle: called, address };
    if (called !== this.deps.aeTitle) {
      this.deps.log.warn({ ...who, reason: `it called ${called}, not ${this.deps.aeTitle}` }, 'DICOM association refused');
      this.audit({ method: 'A-ASSOCIATE', status: 403, query: `called ${called}` });
      this.reject(RejectReason.CalledAeNotRecognized);
      return;
    }
    const known = await this.deps.knownCaller(this.caller, address);
    this.known = known !== undefined;
    this.permissions = known ?? { store: this.deps.acceptUnknown, query: this.deps.acceptUnknown, retrieve: this.deps.acceptUnknown };
    let accepted = 0;
    for (const { id } of association.getPresentationContexts()) {
      const context = association.getPresentationContext(id);
      const syntax = this.acceptableSyntax(context);
      // A class served to others is refused to this caller as the user's decision, not as unsupported.
      if (syntax === undefined) context.setResult(SERVED.some((served) => served(context.getAbstractSyntaxUid())) ? PresentationContextResult.RejectUser : PresentationContextResult.RejectAbstractSyntaxNotSupported);
      else if (syntax === '') context.setResult(PresentationContextResult.RejectTransferSyntaxesNotSupported);
      else {
        context.setResult(PresentationContextResult.Accept, syntax);
        accepted++;
      }
    }
    if (accepted === 0 && !known) {
      // Nothing it asked for is open to an unknown caller: it is told so at once, and why in the log.
      this.deps.log.warn({ ...who, reason: 'not a known application entity from that address (npm run cli -- aes add)' }, 'DICOM association refused');
      this.audit({ method: 'A-ASSOCIATE', status: 403, query: 'unknown calling AE title or address' });
      this.reject(RejectReason.CallingAeNotRecognized);
      return;
    }
    this.deps.log.info({ ...who, association: this.id, known: this.known, contexts: accepted }, 'DICOM association accepted');
    this.audit({ method: 'A-ASSOCIATE', status: 200 });
    // dcmjs-dimse announces the smaller of the two maximum PDU lengths, and a caller's 0 (no limit) would make ours 0
    // too: the caller could then send PDUs of any length, which listener.ts refuses.
    if (association.getMaxPduLength() === 0) association.setMaxPduLength(dimse.Implementation.getMaxPduLength());
    // One operation at a time (PS3.7 D.3.3.3): a caller may not have dozens of C-MOVEs or C-FINDs running at once.
    association.setMaxAsyncOpsInvoked(1);
    association.setMaxAsyncOpsPerformed(1);
    this.accepted = true;
    this.sendAssociationAccept();
  }

  /** Rejects the association for good and closes the connection, which would otherwise hold a place. */
  protected reject(reason: number, result = RejectResult.Permanent, source = RejectSource.ServiceUser): void {
    this.sendAssociationReject(result, source, reason);
    this.socket.end();
  }

  /**
   * The transfer syntax to accept for a presentation context: undefined when its abstract syntax is not served (or
   * not to this caller), '' when none of its syntaxes is. Storage takes every syntax STOW takes, the first proposed
   * winning (a modality lists its preferred first); verification the uncompressed ones.
   */
  private acceptableSyntax(context: PresentationContext): string | undefined {
    const abstract = context.getAbstractSyntaxUid();
    const proposed = context.getTransferSyntaxUids();
    if (abstract === VERIFICATION) return proposed.find((ts) => UNCOMPRESSED.includes(ts)) ?? '';
    if (QUERY_CLASSES.has(abstract) && this.permissions.query) return proposed.find((ts) => UNCOMPRESSED.includes(ts)) ?? '';
    if (RETRIEVE_CLASSES.has(abstract) && this.permissions.retrieve) return proposed.find((ts) => UNCOMPRESSED.includes(ts)) ?? '';
    // A C-GET requester offers to be the storage SCP (PS3.7 D.3.3.4) so that instances come back on its association.
    const storesBack = this.permissions.retrieve && this.association?.getPresentationContexts().some(({ context: c }) => c.getAbstractSyntaxUid() === abstract && c.getProviderRole());
    if (abstract.startsWith(STORAGE_ROOT) && (this.permissions.store || storesBack)) return proposed.find(isKnownTransferSyntax) ?? '';
    return undefined;
  }

  override associationReleaseRequested(): void {
    this.sendAssociationReleaseResponse();
  }

  override abort(): void {
    // A caller that aborts (or hangs up) mid-transfer leaves nothing half-stored: the ingest batch is dropped.
    this.receiving?.body.destroy(new Error('the association was aborted before the instance was whole'));
    for (const retrieval of this.retrievals.values()) retrieval.cancel();
    // PS3.8 9.2 AA-3: the acceptor closes the connection; the caller would wait for it until its ARTIM timer ran out.
    this.socket.destroy();
  }

  override cEchoRequest(request: dimse.requests.CEchoRequest, callback: (response: dimse.responses.CEchoResponse) => void): void {
    const response = CEchoResponse.fromRequest(request);
    response.setStatus(Status.Success);
    callback(response);
  }

  /**
   * The data set's bytes as they arrive, after a file meta information of our own making, go to ingest as one
   * instance; the socket is paused while the spool is behind, so a large instance costs a few chunks of memory.
   */
  override createStoreWritableStream(context: PresentationContext, request: CStoreRequest): Writable {
    // dcmjs-dimse hands on a C-STORE even on a presentation context that was rejected: the right to store is checked
    // again here, and the bytes of one without it go nowhere.
    if (!this.permissions.store || !context.getAbstractSyntaxUid().startsWith(STORAGE_ROOT)) {
      this.receiving = undefined;
      return new Writable({ write: (_chunk, _encoding, done) => done() });
    }
    // Above the largest PDU (1 MB): the library writes a PDU's fragments without waiting for 'drain' in between.
    const body = new PassThrough({ highWaterMark: 2 * 1024 * 1024 });
    body.write(
      fileMetaInformation({
        transferSyntaxUID: context.getAcceptedTransferSyntaxUid() ?? '',
        sopClassUID: request.getAffectedSopClassUid(),
        sopInstanceUID: request.getAffectedSopInstanceUid(),
        sourceAeTitle: this.caller,
      }),
    );
    const batch = new IngestBatch(this.deps.ingest, undefined, true);
    const receipt = batch.add(body);
    // An instance cut short by a lost connection fails here, and nobody asks: its failure is the connection's.
    receipt.catch(() => undefined);
    // Once ingest has its answer (stored, or refused before the end, as too large), the rest of the body is let through
    // unread, so the association goes on to the C-STORE response.
    void receipt.then((r) => r.outcome).catch(() => undefined).finally(() => body.resume());
    this.receiving = { batch, receipt, body };
    const write = body.write.bind(body);
    body.write = ((chunk: Buffer, ...rest: never[]) => {
      const more = write(chunk, ...rest);
      // A body ingest has stopped reading (refused as too large, or dropped) must not hold the socket paused.
      if (!more && !body.destroyed && !body.writableEnded && !this.socket.isPaused()) {
        this.socket.pause();
        body.once('drain', () => this.socket.resume());
      }
      return more;
    }) as typeof body.write;
    // 'drain' does not come once the body is ended or destroyed: the socket must not stay paused.
    body.once('end', () => this.socket.resume());
    body.once('close', () => this.socket.resume());
    return body;
  }

  override createDatasetFromStoreWritableStream(_writable: Writable, context: PresentationContext, callback: (dataset: dimse.Dataset) => void): void {
    // Nothing is parsed here: ingest parses the spooled file.
    callback(new Dataset({}, context.getAcceptedTransferSyntaxUid()));
  }

  override cStoreRequest(request: CStoreRequest, callback: (response: dimse.responses.CStoreResponse) => void): void {
    const receiving = this.receiving;
    this.receiving = undefined;
    const response = CStoreResponse.fromRequest(request);
    if (!receiving) {
      response.setStatus(DimseStatus.NotAuthorized);
      response.setErrorComment('this application entity may not store here');
      this.deps.log.warn({ callingAeTitle: this.caller, address: this.socket.remoteAddress, sopInstanceUid: request.getAffectedSopInstanceUid() }, 'C-STORE refused: the caller may not store');
      this.audit({ method: 'C-STORE', status: DimseStatus.NotAuthorized, sopUid: request.getAffectedSopInstanceUid() });
      callback(response);
      return;
    }
    void (async () => {
      const receipt = await receiving.receipt;
      await receiving.batch.commit();
      return await receipt.outcome;
    })()
      .then(
        (outcome) => this.answerStore(response, outcome),
        (err: unknown) => {
          this.deps.log.error({ err, sopInstanceUid: request.getAffectedSopInstanceUid(), callingAeTitle: this.caller }, 'a C-STORE could not be completed');
          response.setStatus(DimseStatus.OutOfResources);
          // Within the comment's 64 characters: what the operator at the modality can tell the administrator.
          response.setErrorComment(DiskFull.of(err) ? 'server disk full: nothing kept; free space, then send again' : 'the instance could not be stored; nothing was kept, try again');
        },
      )
      .finally(() => callback(response));
  }

  /**
   * Matches go out as Pending responses as they are read, each after the socket has taken the one before; the final
   * response (the callback, which may be called once only) says how the search ended.
   */
  override cFindRequest(request: CFindRequest, callback: (responses: dimse.responses.CFindResponse[]) => void): void {
    // dcmjs-dimse hands on a request whatever context it came on: the right to query and the SOP class are checked here.
    if (!this.permissions.query || !QUERY_CLASSES.has(request.getAffectedSopClassUid())) {
      const refused = CFindResponse.fromRequest(request);
      refused.setAffectedSopClassUid(request.getAffectedSopClassUid());
      refused.setStatus(DimseStatus.NotAuthorized);
      refused.setErrorComment('this application entity may not query here');
      this.audit({ method: 'C-FIND', status: DimseStatus.NotAuthorized });
      callback([refused]);
      return;
    }
    const id = request.getMessageId();
    const search = { cancelled: false };
    this.finds.set(id, search);
    const identifier = request.getDataset();
    const syntax = identifier?.getTransferSyntaxUid() ?? '';
    // Matches leave a few at a time in one write (each is two PDUs), not two writes, two segments, a match.
    let corked = 0;
    const flush = () => {
      for (; corked > 0; corked--) this.socket.uncork();
    };
    const context = this.association!.getAcceptedPresentationContextFromRequest(request)!;
    const send = async (match: Buffer, status: number) => {
      // Written here, not by dcmjs-dimse: its way cost several times the match itself. Patient Root is answered as such.
      const command = encodeCommandSet({
        AffectedSOPClassUID: request.getAffectedSopClassUid(),
        CommandField: C_FIND_RSP,
        MessageIDBeingRespondedTo: id,
        CommandDataSetType: DATA_SET_PRESENT,
        Status: status,
      })!;
      this.socket.cork();
      corked++;
      this.socket.write(pDataMessage(context.getPresentationContextId(), command, match, this.association!.getMaxPduLength()));
      if (corked < MATCHES_A_WRITE && !this.socket.writableNeedDrain) return;
      flush();
      // Waiting for the socket (or its end), or at least for the event loop, lets a C-CANCEL in between two writes.
      await new Promise<void>((resolve) => {
        if (!this.socket.writableNeedDrain) return void setImmediate(resolve);
        const done = () => {
          this.socket.off('drain', done).off('close', done);
          resolve();
        };
        this.socket.on('drain', done).on('close', done);
      });
    };
    const final = CFindResponse.fromRequest(request);
    final.setAffectedSopClassUid(request.getAffectedSopClassUid());
    const bytes = identifier && receivedBytes(identifier);
    void (bytes
      ? answerFind(this.deps.catalog, this.deps.aeTitle, { identifier: bytes, transferSyntaxUid: syntax, sopClassUid: request.getAffectedSopClassUid() }, { send, cancelled: () => search.cancelled || this.socket.destroyed })
      : Promise.resolve({ status: DimseStatus.UnableToProcess, errorComment: 'the C-FIND request has no identifier', matches: 0, summary: '' })
    )
      .then(
        (outcome) => {
          final.setStatus(outcome.status);
          if (outcome.errorComment) final.setErrorComment(outcome.errorComment);
          this.audit({ method: 'C-FIND', status: outcome.status, query: outcome.summary });
          this.deps.log.info({ callingAeTitle: this.caller, association: this.id, query: outcome.summary, matches: outcome.matches, status: hex(outcome.status) }, 'C-FIND answered');
        },
        (err: unknown) => {
          this.deps.log.error({ err, callingAeTitle: this.caller }, 'a C-FIND could not be answered');
          final.setStatus(DimseStatus.UnableToProcess);
          final.setErrorComment('the search failed; try again');
          this.audit({ method: 'C-FIND', status: DimseStatus.UnableToProcess });
        },
      )
      .finally(() => {
        flush();
        this.finds.delete(id);
        if (!this.socket.destroyed) callback([final]);
      });
  }

  override cCancelRequest(request: dimse.requests.CCancelRequest): void {
    const search = this.finds.get(request.getMessageIdBeingRespondedTo());
    if (search) search.cancelled = true;
    this.retrievals.get(request.getMessageIdBeingRespondedTo())?.cancel();
  }

  override cMoveRequest(request: CMoveRequest, callback: (responses: dimse.responses.CMoveResponse[]) => void): void {
    this.retrieve('C-MOVE', request, callback as (responses: RetrieveResponse[]) => void);
  }

  override cGetRequest(request: CGetRequest, callback: (responses: dimse.responses.CGetResponse[]) => void): void {
    this.retrieve('C-GET', request, callback as (responses: RetrieveResponse[]) => void);
  }

  /** C-MOVE and C-GET (retrieve.ts): pending responses as sub-operations end, the final one through `callback`, once. */
  private retrieve(method: string, request: CMoveRequest | CGetRequest, callback: (responses: RetrieveResponse[]) => void): void {
    const id = request.getMessageId();
    const retrieval = new Retrieval(
      { catalog: this.deps.catalog, reads: this.deps.reads, aeTitle: this.deps.aeTitle, log: this.deps.log },
      // The SOP class is checked with the right: a request on another context (dcmjs-dimse hands it on) is not one.
      { peer: this, association: this.association!, connection: this.socket, aeTitle: this.caller, mayRetrieve: this.permissions.retrieve && RETRIEVE_CLASSES.has(request.getAffectedSopClassUid()) },
    );
    this.retrievals.set(id, retrieval);
    void retrieval
      .run(request, (pending) => this.sendResponse(request, pending))
      .then(({ response, studyUids, query }) => {
        for (const studyUid of studyUids.length > 0 ? studyUids : [undefined]) this.audit({ method, status: response.getStatus(), studyUid, query });
        if (!this.socket.destroyed) callback([response]);
      })
      .finally(() => this.retrievals.delete(id));
  }

  /** PS3.4 B.2.3: STOW's FailureReason codes are the C-STORE statuses they come from. */
  private answerStore(response: dimse.responses.CStoreResponse, outcome: InstanceOutcome): void {
    (this.tally ??= new UploadTally('dicom', `ae:${this.caller}`, this.socket.remoteAddress ?? null)).add(outcome);
    const detail = { callingAeTitle: this.caller, address: this.socket.remoteAddress, sopInstanceUid: outcome.sopInstanceUid, studyUid: outcome.studyUid };
    if (outcome.status === 'failed') {
      response.setStatus(outcome.failureReason);
      response.setErrorComment(errorComment(outcome.reason));
      this.deps.log.warn({ ...detail, failureReason: hex(outcome.failureReason), reason: outcome.reason }, 'C-STORE refused');
    } else response.setStatus(Status.Success);
    this.audit({ method: 'C-STORE', status: response.getStatus(), studyUid: outcome.studyUid, sopUid: outcome.sopInstanceUid });
  }

  /** An audit event under the calling AE title (`ae:` when it is a known one, `rejected:ae:` otherwise) and address. */
  private audit(operation: Operation): void {
    this.deps.audit({
      at: Date.now(),
      credential: `${this.known ? '' : 'rejected:'}ae:${this.caller}`,
      ip: this.socket.remoteAddress ?? null,
      method: operation.method,
      path: `dicom:${this.deps.aeTitle}`,
      query: operation.query ?? null,
      studyUid: operation.studyUid ?? null,
      seriesUid: null,
      sopUid: operation.sopUid ?? null,
      status: operation.status,
      requestId: this.id,
    });
  }

  /** The connection is gone: an instance still arriving is dropped, nothing of it kept; what was stored is logged. */
  connectionClosed(): void {
    this.abort();
    if (this.tally) this.deps.uploads.add(this.tally);
    this.tally = undefined;
  }
}
