/** Reading a picture from disk for the engine, with the same size limit the engine applies to bytes. */
import { readCappedFile } from '../util/read-capped-file.js';
import { DEFAULT_MAX_BYTES } from './preprocess.js';

/**
 * The bytes of the image file at `path`, for `encodeImage`/`generate`. Directories, devices and pipes are refused
 * before anything is read, files over `maxBytes` (default 20 MB, as the engine) before they are loaded; throws
 * FileReadError (a UserFacingError) with a one-line message.
 */
export function readImageFile(path: string, maxBytes: number = DEFAULT_MAX_BYTES): Promise<Uint8Array> {
  return readCappedFile(path, { maxBytes, what: 'image' });
}
