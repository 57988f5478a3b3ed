/**
 * What travels through BullMQ and Redis between fronts and workers. Job data is JSON: the request without its
 * callbacks and signal, and the picture as its image key — its bytes go to Redis separately (short TTL), and only
 * when no worker has that key cached, so a picture crosses the network once.
 */
import type { DeliveryTicket, GenerateRequest, GenerateResult } from '../engine/api.js';
import { KEY_PREFIX } from './redis.js';

export interface AnswerJobData {
  /** The request id that follows the job from front to worker in every log line. */
  requestId: string;
  /** The request as `generate` takes it, minus `image`, callbacks and signal. */
  request: Omit<
    GenerateRequest,
    'image' | 'signal' | 'onToken' | 'onQueuePosition' | 'requestId' | 'delivery'
  >;
  /** The front that added the job (its heartbeat is `frontKey(front)`). */
  front?: string;
  /** The picture: its key, and whether its bytes wait under `bytesKey(key)` for a worker to encode them. */
  image?: { key: string; uploaded: boolean };
  wantTokens: boolean;
  /** When the front gives up (ms since the epoch): a worker skips jobs already past it. */
  deadline: number;
}

/** What a job's progress events carry. */
export type AnswerProgress = { token: { id: number; textSoFar: string } };

export type AnswerJobResult = GenerateResult;

/** Uploaded picture bytes, until a worker has encoded them (or the TTL passes). */
export const bytesKey = (imageKey: string) => `${KEY_PREFIX}:bytes:${imageKey}`;
/** Set once when a job's answer is handed to the person: a second delivery (another front) is skipped. */
export const repliedKey = (jobId: string) => `${KEY_PREFIX}:replied:${jobId}`;
/** The model the workers serve (`{ modelId, demo, cacheTag }`), written by every worker at start. */
export const MODEL_KEY = `${KEY_PREFIX}:model`;
/** A front's heartbeat, while it runs (PX `heartbeatTtlMs`, refreshed every `heartbeatMs`; deleted on close). */
export const frontKey = (frontId: string) => `${KEY_PREFIX}:front:${frontId}`;
/**
 * Answers still owed to people: a hash job id → `OwedRecord` (JSON). Written before the job is added, removed once
 * its front (or a sweeping one) has handed the outcome on; an entry whose front has no heartbeat is an orphan.
 */
export const OWED_KEY = `${KEY_PREFIX}:owed`;
/** Fronts publish a job id here when its person gave up; the worker running it stops. */
export const CANCEL_CHANNEL = `${KEY_PREFIX}:cancel`;

/** How long uploaded bytes wait for a worker. */
export const BYTES_TTL_MS = 10 * 60_000;
/** How long a job's answer and reply guard stay in Redis. */
export const DONE_TTL_MS = 60 * 60_000;

/** One entry of `OWED_KEY`: whose answer it is and how to deliver it (the chat core's ticket). */
export interface OwedRecord {
  front: string;
  requestId: string;
  delivery: DeliveryTicket;
  /** When the job was added (ms since the epoch). */
  at: number;
}

export interface ModelInfo {
  modelId: string;
  demo: boolean;
  cacheTag: string;
}

/**
 * A BullMQ job id from a request id. BullMQ reserves `:`, refuses ids that read as integers (its own ids) and
 * makes up an id for an empty one, which the front would then never hear of: those get a prefix.
 */
export function jobIdFor(requestId: string): string {
  const id = requestId.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 200);
  return id === '' || `${Number.parseInt(id, 10)}` === id ? `req-${id}` : id;
}
