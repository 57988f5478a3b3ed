/**
 * Slack message text in both directions: incoming mrkdwn (mentions, links, HTML entities) becomes plain text for
 * the chat core, and outgoing text is escaped and cut to Slack's limits.
 */

/**
 * Longest text one answer message carries. A section block takes 3,000 characters and chat.postMessage truncates
 * `text` at 40,000; staying at the smaller one keeps every message whole whichever way Slack renders it.
 */
export const SLACK_MESSAGE_LIMIT = 3000;

/** Turns a message's mrkdwn into what the person typed: the bot's mention removed, links and entities unwrapped. */
export function plainTextFromSlack(text: string | undefined, botUserId: string | undefined): string {
  if (!text) return '';
  let out = text;
  if (botUserId) out = out.replaceAll(new RegExp(`<@${botUserId}(?:\\|[^>]*)?>`, 'g'), ' ');
  out = out
    // <@U123|name> / <#C123|name> / <!here> / <https://x|label>: keep the readable part.
    .replace(/<([@#!])[^>|]*\|([^>]*)>/g, (_m, sigil: string, label: string) =>
      sigil === '!' ? label : sigil + label,
    )
    .replace(/<([@#])([A-Z0-9]+)>/g, '$1$2')
    .replace(/<!([a-z]+)>/g, '@$1')
    .replace(/<((?:https?|mailto):[^>|]*)\|([^>]*)>/g, '$2')
    .replace(/<((?:https?|mailto):[^>]*)>/g, '$1')
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&amp;', '&');
  return out.replace(/\s+/g, ' ').trim();
}

/**
 * Escapes the three characters Slack treats as markup, so model output can never turn into a mention, a channel
 * ping or a link. Markdown `**bold**` becomes Slack's `*bold*`.
 */
export function escapeForSlack(text: string): string {
  return text
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replace(/\*\*([^*\n]+)\*\*/g, '*$1*');
}

/**
 * Splits text into pieces of at most `limit` characters, preferring paragraph breaks, then line breaks, then
 * spaces, and never cutting an HTML entity (`&amp;`) in half.
 */
export function splitForSlack(text: string, limit = SLACK_MESSAGE_LIMIT): string[] {
  if (limit < 16) throw new RangeError(`limit ${limit} is too small to split messages`);
  const pieces: string[] = [];
  let rest = text;
  while (rest.length > limit) {
    const window = rest.slice(0, limit + 1);
    let cut = -1;
    for (const separator of ['\n\n', '\n', ' ']) {
      const at = window.lastIndexOf(separator);
      if (at >= limit / 2) {
        cut = at;
        break;
      }
    }
    let next: number;
    if (cut >= 0) {
      next = cut;
    } else {
      next = limit;
      const amp = rest.lastIndexOf('&', next - 1);
      if (amp >= 0 && next - amp < 8 && !rest.slice(amp, next).includes(';')) next = amp;
    }
    pieces.push(rest.slice(0, next).trimEnd());
    rest = rest.slice(next).trimStart();
  }
  if (rest.length > 0 || pieces.length === 0) pieces.push(rest);
  return pieces;
}
