import type { Attachment } from 'discord.js';
import { downloadWithCap } from '../../src/chat/download.js';
import type { IncomingImage } from '../../src/chat/types.js';

/** An attachment as the chat core sees it: declared facts up front, bytes fetched once, right away. */
export function toIncomingImage(attachment: Attachment): IncomingImage {
  return {
    name: attachment.name,
    ...(attachment.contentType ? { contentType: attachment.contentType } : {}),
    size: attachment.size,
    download: (maxBytes, signal) =>
      downloadWithCap(attachment.url, { maxBytes, name: attachment.name, ...(signal ? { signal } : {}) }),
  };
}
