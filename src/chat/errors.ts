/**
 * The errors an adapter raises for the chat core to explain (a picture that cannot be used, input to refuse).
 * They are the engine's, re-exported so adapters depend on the chat layer only.
 */
export { ImageError, type ImageErrorCode, InputError, QueueFullError } from '../engine/errors.js';
