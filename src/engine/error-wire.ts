/**
 * Errors across a thread or process boundary (structured clone and JSON keep only plain data): the sender turns an
 * error into a `WireError`, the receiver re-creates it as the same class, so `instanceof` checks, `code` and
 * `userMessage` — and with them every polite message of the chat core — stay exactly as in one process.
 */
import { UserFacingError } from '../errors.js';
import { StoreUnavailableError } from '../storage/keyv-store.js';
import {
  ImageError,
  InputError,
  QueueFullError,
  RequestAbortedError,
  RequestTimeoutError,
} from './errors.js';
import { QueueClosedError } from './queue.js';

export interface WireError {
  name: string;
  message: string;
  stack?: string;
  /** The error's own plain fields (`code`, `userMessage`, `capacity`, …). */
  fields: Record<string, string | number | boolean | null>;
}

/** The classes a receiver re-creates by name; anything else with a `code` and `userMessage` comes back as its base. */
const KNOWN: Record<string, { prototype: Error }> = {
  ImageError,
  InputError,
  QueueFullError,
  QueueClosedError,
  RequestAbortedError,
  RequestTimeoutError,
  StoreUnavailableError,
  UserFacingError,
};

export function toWire(error: unknown): WireError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error), fields: {} };
  const fields: WireError['fields'] = {};
  for (const [key, value] of Object.entries(error)) {
    if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) {
      fields[key] = value as string | number | boolean | null;
    }
  }
  return { name: error.name, message: error.message, ...(error.stack ? { stack: error.stack } : {}), fields };
}

export function fromWire(wire: WireError): Error {
  const known =
    KNOWN[wire.name] ??
    (typeof wire.fields.code === 'string' && typeof wire.fields.userMessage === 'string'
      ? UserFacingError
      : Error);
  // Built from the prototype, not the constructor: each class has its own constructor arguments, and the fields
  // that came over are exactly what the instance had.
  const error = Object.create(known.prototype) as Error;
  Object.defineProperty(error, 'message', { value: wire.message, writable: true, configurable: true });
  Object.assign(error, wire.fields, { name: wire.name });
  if (wire.stack)
    Object.defineProperty(error, 'stack', { value: wire.stack, writable: true, configurable: true });
  return error;
}
