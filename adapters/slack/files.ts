/**
 * Slack files → `IncomingImage`s. Downloads go to `url_private` with the bot token, only to Slack's own hosts, with
 * the size cap checked on the declared size, on Content-Length and while the bytes arrive; an HTML login page or a
 * file that is not an image becomes a message the person can act on instead of bytes for the decoder.
 */
import { DownloadError, downloadWithCap, tooLarge } from '../../src/chat/download.js';
import { ImageError, InputError } from '../../src/chat/errors.js';
import type { IncomingImage } from '../../src/chat/types.js';
import { sniffFile } from '../../src/util/file-sniff.js';

/** The fields of a Slack file object the adapter uses. */
export interface SlackFile {
  id: string;
  name?: string;
  title?: string;
  mimetype?: string;
  filetype?: string;
  size?: number;
  url_private?: string;
  url_private_download?: string;
  /** "hosted", "external", "tombstone" (deleted), "hidden_by_limit" (free-plan history limit), … */
  mode?: string;
  /** "check_file_info": the event carries only the id (Slack Connect); files.info has the rest. */
  file_access?: string;
}

export type SlackFileProblem = 'login_page' | 'http_status' | 'untrusted_host' | 'no_url';

/** A file Slack would not hand over; `userMessage` says what to fix. */
export class SlackFileAccessError extends InputError {
  override name = 'SlackFileAccessError';
  constructor(
    readonly problem: SlackFileProblem,
    userMessage: string,
  ) {
    super(userMessage);
  }
}

const IMAGE_FILETYPES = new Set(['jpg', 'jpeg', 'png', 'gif', 'webp', 'tiff', 'tif', 'avif', 'heic', 'bmp']);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

/** Reads the `files` array of an event or message defensively; deleted files are dropped. */
export function parseSlackFiles(raw: unknown): SlackFile[] {
  if (!Array.isArray(raw)) return [];
  const files: SlackFile[] = [];
  for (const item of raw) {
    if (!isRecord(item) || typeof item.id !== 'string') continue;
    const file: SlackFile = { id: item.id };
    for (const key of [
      'name',
      'title',
      'mimetype',
      'filetype',
      'url_private',
      'url_private_download',
      'mode',
      'file_access',
    ] as const) {
      const value = optionalString(item[key]);
      if (value !== undefined) file[key] = value;
    }
    if (typeof item.size === 'number' && Number.isFinite(item.size)) file.size = item.size;
    if (file.mode === 'tombstone') continue;
    files.push(file);
  }
  return files;
}

/** Declared as an image: the only files remembered for `/describe` and offered first to the chat core. */
export function isImageFile(file: SlackFile): boolean {
  if (file.mimetype) return file.mimetype.toLowerCase().startsWith('image/');
  return file.filetype !== undefined && IMAGE_FILETYPES.has(file.filetype.toLowerCase());
}

/** Images first (the core uses the first one), then the other files so the person hears why they were skipped. */
export function imagesFirst(files: SlackFile[]): SlackFile[] {
  return [...files.filter(isImageFile), ...files.filter((file) => !isImageFile(file))];
}

export function fileLabel(file: SlackFile): string {
  return file.name ?? file.title ?? file.id;
}

/** The files.info call the adapter needs; Bolt's WebClient satisfies it. */
export interface FilesInfoClient {
  files: { info(args: { file: string }): Promise<{ file?: unknown }> };
}

/**
 * Fills in files whose event carried only an id (`file_access: "check_file_info"`) or no download URL. A failed
 * lookup leaves the file as it was; its download then explains what is missing.
 */
export async function completeSlackFiles(client: FilesInfoClient, files: SlackFile[]): Promise<SlackFile[]> {
  return Promise.all(
    files.map(async (file) => {
      const incomplete =
        file.file_access === 'check_file_info' || !(file.url_private_download ?? file.url_private);
      if (!incomplete || file.mode === 'hidden_by_limit') return file;
      try {
        const { file: info } = await client.files.info({ file: file.id });
        const [full] = parseSlackFiles([info]);
        return full ? { ...file, ...full, file_access: undefined } : file;
      } catch {
        return file;
      }
    }),
  );
}

/**
 * Which hosts may receive the bot token: Slack's (slack.com, GovSlack) and the host of a configured API base
 * (a proxy or the test emulator). A file link anywhere else is refused rather than sent the token.
 */
export function slackHostPolicy(apiUrl?: string): (host: string) => boolean {
  const extra = apiUrl ? new URL(apiUrl).host.toLowerCase() : undefined;
  return (host) => {
    const h = host.toLowerCase();
    if (h === extra) return true;
    const name = h.replace(/:443$/, '');
    return ['slack.com', 'slack-gov.com'].some((domain) => name === domain || name.endsWith(`.${domain}`));
  };
}

export interface SlackDownloadDeps {
  botToken: string;
  isTrustedHost: (host: string) => boolean;
  fetch?: typeof fetch;
}

function loginPage(file: SlackFile): SlackFileAccessError {
  return new SlackFileAccessError(
    'login_page',
    `Slack sent a sign-in page instead of "${fileLabel(file)}", so I can't see it. The app is probably missing ` +
      'the `files:read` scope: add it under "OAuth & Permissions", reinstall the app, then try again.',
  );
}

/** Downloads a Slack file and makes sure the bytes are an image in a format the decoder takes. */
export async function downloadSlackFile(
  file: SlackFile,
  maxBytes: number,
  deps: SlackDownloadDeps,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  const label = fileLabel(file);
  if (file.size !== undefined && file.size > maxBytes) throw tooLarge(label, maxBytes, file.size);
  const url = file.url_private_download ?? file.url_private;
  if (!url) {
    throw new SlackFileAccessError(
      'no_url',
      `Slack gave me no download link for "${label}" (it may be deleted, or hidden by the workspace's plan limits).`,
    );
  }
  let host: string;
  try {
    host = new URL(url).host;
  } catch {
    throw new SlackFileAccessError('no_url', `Slack gave me an unusable download link for "${label}".`);
  }
  if (!deps.isTrustedHost(host)) {
    throw new SlackFileAccessError(
      'untrusted_host',
      `"${label}" is not stored on Slack, so I won't fetch it with the bot's credentials.`,
    );
  }

  const bytes = await downloadWithCap(url, {
    maxBytes,
    name: label,
    headers: { Authorization: `Bearer ${deps.botToken}` },
    ...(signal ? { signal } : {}),
    ...(deps.fetch ? { fetch: deps.fetch } : {}),
    failures: {
      unreachable: (cause) =>
        new DownloadError(`I couldn't download "${label}" from Slack. Please try again.`, { cause }),
      refused: (status) =>
        new SlackFileAccessError(
          'http_status',
          `Slack refused to hand over "${label}" (HTTP ${status}). Check that the app has the \`files:read\` ` +
            'scope and is a member of this channel.',
        ),
      webPage: () => loginPage(file),
    },
  });
  if (bytes.byteLength === 0) throw new ImageError('empty', `"${label}" is empty.`);

  const sniffed = sniffFile(bytes);
  switch (sniffed.kind) {
    case 'image':
      return bytes;
    case 'html':
      throw loginPage(file);
    case 'pdf':
      throw new ImageError(
        'unsupported_type',
        `"${label}" is a PDF, not an image. Send a photo or a screenshot (JPEG, PNG, GIF or WebP) instead.`,
      );
    case 'svg':
      throw new ImageError(
        'unsupported_type',
        `"${label}" is an SVG drawing, which I can't read. Export it as PNG or JPEG and send that.`,
      );
    default: {
      const what = sniffed.description
        ? `is ${sniffed.description}, not an image I can read`
        : "doesn't look like an image I can read";
      throw new ImageError('unsupported_type', `"${label}" ${what}. Send a JPEG, PNG, GIF or WebP.`);
    }
  }
}

/** Wraps a Slack file for the chat core; nothing is downloaded until the core asks. */
export function slackFileToImage(file: SlackFile, deps: SlackDownloadDeps): IncomingImage {
  return {
    name: fileLabel(file),
    ...(file.mimetype ? { contentType: file.mimetype } : {}),
    ...(file.size !== undefined ? { size: file.size } : {}),
    download: (maxBytes, signal) => downloadSlackFile(file, maxBytes, deps, signal),
  };
}
