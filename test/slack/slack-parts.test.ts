/**
 * The Slack adapter's pieces on their own: configuration from the environment, text in and out of Slack, file
 * sniffing and downloads, the thread output against the emulator's Web API.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { webApi } from '@slack/bolt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SLACK_DEFAULTS, slackConfigFromEnv } from '../../adapters/slack/config.js';
import {
  completeSlackFiles,
  downloadSlackFile,
  imagesFirst,
  parseSlackFiles,
  SlackFileAccessError,
  slackHostPolicy,
} from '../../adapters/slack/files.js';
import { redact } from '../../adapters/slack/logger.js';
import { placeOf } from '../../adapters/slack/messages.js';
import { SlackThreadOutput } from '../../adapters/slack/output.js';
import { compareSlackTs, OnceFilter } from '../../adapters/slack/recent.js';
import {
  escapeForSlack,
  plainTextFromSlack,
  SLACK_MESSAGE_LIMIT,
  splitForSlack,
} from '../../adapters/slack/text.js';
import { sniffFile } from '../../src/util/file-sniff.js';
import { SlackEmulator } from '../emulators/slack/server.js';
import { ROOT } from '../helpers/shared.js';
import { loadTestImages, PDF_BYTES, type TestImages } from './images.js';

const BOT_TOKEN = 'xoxb-7777-8888-partstoken';

describe('slackConfigFromEnv', () => {
  it('returns undefined when no Slack credential is set', () => {
    expect(slackConfigFromEnv({})).toBeUndefined();
    expect(slackConfigFromEnv({ SLACK_BOT_TOKEN: '  ', SLACK_PORT: '4000' })).toBeUndefined();
  });

  it('defaults to Socket Mode with an app token, HTTP with a signing secret', () => {
    expect(slackConfigFromEnv({ SLACK_BOT_TOKEN: 'xoxb-1', SLACK_APP_TOKEN: 'xapp-1' })).toMatchObject({
      mode: 'socket',
      appToken: 'xapp-1',
      commandName: '/describe',
      shortcutCallbackId: 'describe_image',
    });
    const http = slackConfigFromEnv({
      SLACK_BOT_TOKEN: 'xoxb-1',
      SLACK_SIGNING_SECRET: 'secret',
      SLACK_PORT: '8080',
      SLACK_HOST: '127.0.0.1',
      SLACK_API_URL: 'http://localhost:9999/api',
    });
    expect(http).toMatchObject({ mode: 'http', signingSecret: 'secret', port: 8080, host: '127.0.0.1' });
    expect(http?.apiUrl).toBe('http://localhost:9999/api/');
    expect(slackConfigFromEnv({ SLACK_BOT_TOKEN: 'xoxb-1', SLACK_SIGNING_SECRET: 's' })?.port).toBe(3000);
    expect(
      slackConfigFromEnv({
        SLACK_BOT_TOKEN: 'xoxb-1',
        SLACK_APP_TOKEN: 'xapp-1',
        SLACK_SIGNING_SECRET: 's',
        SLACK_MODE: 'http',
      })?.mode,
    ).toBe('http');
  });

  it('throws a clear error on a half-done setup, never echoing a token', () => {
    const cases: [NodeJS.ProcessEnv, RegExp][] = [
      [{ SLACK_APP_TOKEN: 'xapp-secret-1' }, /SLACK_APP_TOKEN is set but SLACK_BOT_TOKEN is not/],
      [{ SLACK_SIGNING_SECRET: 'abc' }, /SLACK_BOT_TOKEN is not/],
      [{ SLACK_BOT_TOKEN: 'xoxb-secret-1' }, /SLACK_APP_TOKEN .* or SLACK_SIGNING_SECRET/],
      [{ SLACK_BOT_TOKEN: 'xapp-secret-1', SLACK_APP_TOKEN: 'xapp-2' }, /app-level token/],
      [{ SLACK_BOT_TOKEN: 'xoxp-secret-1', SLACK_APP_TOKEN: 'xapp-2' }, /user token/],
      [
        { SLACK_BOT_TOKEN: 'xoxb-secret-1', SLACK_APP_TOKEN: 'xoxb-secret-2' },
        /SLACK_APP_TOKEN should be an app-level token/,
      ],
      [
        { SLACK_BOT_TOKEN: 'xoxb-secret-1', SLACK_APP_TOKEN: 'xapp-1', SLACK_MODE: 'http' },
        /needs SLACK_SIGNING_SECRET/,
      ],
      [
        { SLACK_BOT_TOKEN: 'xoxb-secret-1', SLACK_SIGNING_SECRET: 's', SLACK_MODE: 'socket' },
        /needs SLACK_APP_TOKEN/,
      ],
      [
        { SLACK_BOT_TOKEN: 'xoxb-secret-1', SLACK_SIGNING_SECRET: 's', SLACK_MODE: 'rtm' },
        /"socket" or "http"/,
      ],
      [{ SLACK_BOT_TOKEN: 'xoxb-secret-1', SLACK_SIGNING_SECRET: 's', SLACK_PORT: 'eighty' }, /SLACK_PORT/],
      [
        { SLACK_BOT_TOKEN: 'xoxb-secret-1', SLACK_SIGNING_SECRET: 's', SLACK_API_URL: 'ftp://x' },
        /SLACK_API_URL/,
      ],
    ];
    for (const [env, message] of cases) {
      let error: unknown;
      try {
        slackConfigFromEnv(env);
      } catch (e) {
        error = e;
      }
      expect(error, JSON.stringify(Object.keys(env))).toBeInstanceOf(Error);
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message).not.toMatch(/secret-\d/);
    }
  });
});

describe('Slack app manifest', () => {
  it('declares every scope, event, command and shortcut the adapter relies on', async () => {
    const manifest = await readFile(join(ROOT, 'adapters', 'slack', 'manifest.yaml'), 'utf8');
    const listed = (item: string) =>
      new RegExp(`^\\s*- ${item.replace('.', '\\.')}\\s*(#.*)?$`, 'm').test(manifest);
    const scopes = ['app_mentions:read', 'channels:history', 'groups:history', 'im:history', 'mpim:history'];
    for (const scope of [...scopes, 'chat:write', 'files:read', 'reactions:write', 'commands']) {
      expect(listed(scope), scope).toBe(true);
    }
    for (const event of ['app_mention', 'message.channels', 'message.groups', 'message.im', 'message.mpim']) {
      expect(listed(event), event).toBe(true);
    }
    expect(manifest).toMatch(new RegExp(`command: ${SLACK_DEFAULTS.commandName}$`, 'm'));
    expect(manifest).toMatch(new RegExp(`callback_id: ${SLACK_DEFAULTS.shortcutCallbackId}$`, 'm'));
    expect(manifest).toMatch(/^\s*type: message$/m);
    expect(manifest).toMatch(/^\s*socket_mode_enabled: true$/m);
    expect(manifest).toMatch(/^\s*messages_tab_enabled: true$/m);
    expect(manifest).not.toMatch(/\t/);
  });
});

describe('Slack text', () => {
  it('strips the bot mention and unwraps Slack markup', () => {
    expect(plainTextFromSlack('<@U0BOT> what is <b>this</b> &amp; that?', 'U0BOT')).toBe(
      'what is <b>this</b> & that?',
    );
    expect(
      plainTextFromSlack('<@U0BOT|blip2>   see <https://example.com|the site> and <#C1|general>', 'U0BOT'),
    ).toBe('see the site and #general');
    expect(plainTextFromSlack('hey <@U0OTHER> <!here> <mailto:a@b.c>', 'U0BOT')).toBe(
      'hey @U0OTHER @here mailto:a@b.c',
    );
    expect(plainTextFromSlack(undefined, 'U0BOT')).toBe('');
  });

  it('escapes markup so answers cannot ping or link', () => {
    expect(escapeForSlack('<!channel> a & b **bold**')).toBe('&lt;!channel&gt; a &amp; b *bold*');
  });

  it('splits long text at natural breaks within the limit, losing nothing', () => {
    const paragraph = 'word '.repeat(500).trim();
    const text = [paragraph, paragraph, paragraph].join('\n\n');
    const pieces = splitForSlack(text, SLACK_MESSAGE_LIMIT);
    expect(pieces.length).toBeGreaterThan(1);
    for (const piece of pieces) expect(piece.length).toBeLessThanOrEqual(SLACK_MESSAGE_LIMIT);
    expect(pieces.join(' ').replace(/\s+/g, ' ')).toBe(text.replace(/\s+/g, ' '));
    // No break anywhere: a hard cut that does not split an entity.
    const dense = `${'x'.repeat(95)}&amp;${'y'.repeat(50)}`;
    const cut = splitForSlack(dense, 98);
    expect(cut[0]).toBe('x'.repeat(95));
    expect(cut.join('')).toBe(dense);
    expect(splitForSlack('')).toEqual(['']);
  });
});

describe('Slack files', () => {
  let images: TestImages;
  let emulator: SlackEmulator;
  beforeAll(async () => {
    images = await loadTestImages();
    emulator = await SlackEmulator.start({ botToken: BOT_TOKEN });
  });
  afterAll(async () => {
    await emulator?.close();
  });

  it('recognises images, PDFs and HTML by their bytes', () => {
    expect(sniffFile(images.cat).kind).toBe('image');
    expect(sniffFile(images.rocket)).toEqual({ kind: 'image', format: 'JPEG' });
    expect(sniffFile(PDF_BYTES).kind).toBe('pdf');
    expect(sniffFile(new TextEncoder().encode('\n  <!DOCTYPE html><html>')).kind).toBe('html');
    expect(sniffFile(new TextEncoder().encode('<?xml version="1.0"?><svg></svg>')).kind).toBe('svg');
    expect(sniffFile(new Uint8Array([1, 2, 3])).kind).toBe('unknown');
  });

  it('sends the bot token only to Slack hosts and the configured API host', () => {
    const trusted = slackHostPolicy('http://127.0.0.1:4567/api/');
    expect(trusted('files.slack.com')).toBe(true);
    expect(trusted('slack.com')).toBe(true);
    expect(trusted('files.slack-gov.com')).toBe(true);
    expect(trusted('127.0.0.1:4567')).toBe(true);
    expect(trusted('127.0.0.1:4568')).toBe(false);
    expect(trusted('evil-slack.com')).toBe(false);
    expect(trusted('slack.com.evil.example')).toBe(false);
  });

  it('refuses to fetch a file from elsewhere, and explains a missing token', async () => {
    const [file] = parseSlackFiles([
      { id: 'F1', name: 'x.png', mimetype: 'image/png', url_private: 'https://example.com/x.png' },
    ]);
    const deps = { botToken: BOT_TOKEN, isTrustedHost: slackHostPolicy(emulator.apiUrl) };
    await expect(downloadSlackFile(file!, 1e6, deps)).rejects.toMatchObject({ problem: 'untrusted_host' });

    const served = emulator.addFile({ name: 'cat.png', mimetype: 'image/png', bytes: images.cat });
    const withoutToken = downloadSlackFile(served, 1e6, { ...deps, botToken: 'xoxb-wrong' });
    await expect(withoutToken).rejects.toBeInstanceOf(SlackFileAccessError);
    await expect(withoutToken).rejects.toMatchObject({
      problem: 'login_page',
      userMessage: expect.stringMatching(/files:read/),
    });
    const bytes = await downloadSlackFile(served, 1e6, deps);
    expect(Buffer.from(bytes).equals(Buffer.from(images.cat))).toBe(true);
    expect(emulator.fileFetches.map((f) => f.authorized)).toEqual([false, true]);
  });

  it('looks up files whose event carried only an id, and drops deleted ones', async () => {
    const real = emulator.addFile({ name: 'rocket.jpg', mimetype: 'image/jpeg', bytes: images.rocket });
    const files = parseSlackFiles([
      { id: real.id, file_access: 'check_file_info' },
      { id: 'F0GONE', mode: 'tombstone' },
      {
        id: 'F0DOC',
        name: 'a.pdf',
        mimetype: 'application/pdf',
        url_private: 'https://files.slack.com/a.pdf',
      },
      'not a file',
    ]);
    expect(files.map((f) => f.id)).toEqual([real.id, 'F0DOC']);
    const client = new webApi.WebClient(BOT_TOKEN, { slackApiUrl: emulator.apiUrl });
    const complete = await completeSlackFiles(client, files);
    expect(complete[0]).toMatchObject({
      name: 'rocket.jpg',
      mimetype: 'image/jpeg',
      url_private: real.url_private,
    });
    expect(emulator.callsTo('files.info')).toHaveLength(1);
    expect(imagesFirst([...complete].reverse()).map((f) => f.id)).toEqual([real.id, 'F0DOC']);
  });
});

describe('SlackThreadOutput', () => {
  let emulator: SlackEmulator;
  beforeAll(async () => {
    emulator = await SlackEmulator.start({ botToken: BOT_TOKEN });
  });
  afterAll(async () => {
    await emulator?.close();
  });

  it('posts long answers as several thread replies within the limit, edits in place, and reacts while working', async () => {
    const client = new webApi.WebClient(BOT_TOKEN, { slackApiUrl: emulator.apiUrl });
    const parent = emulator.nextTs();
    const output = new SlackThreadOutput(client, { channel: 'C0OUT', threadTs: parent, reactTo: parent });
    await output.showTyping();
    await output.showTyping();
    const long = Array.from({ length: 400 }, (_, i) => `sentence ${i} & more.`).join(' ');
    expect(long.length).toBeGreaterThan(2 * SLACK_MESSAGE_LIMIT);
    const first = await output.send(long);
    const posted = emulator.messagesIn('C0OUT', parent);
    const needed = Math.ceil(escapeForSlack(long).length / SLACK_MESSAGE_LIMIT);
    expect(posted.length).toBeGreaterThanOrEqual(needed);
    expect(posted.length).toBeLessThanOrEqual(needed + 1);
    expect(posted[0]!.ts).toBe(first.id);
    for (const message of posted) expect(message.text.length).toBeLessThanOrEqual(SLACK_MESSAGE_LIMIT);
    expect(posted.map((m) => m.text).join(' ')).toContain('sentence 399 &amp; more.');

    await output.edit(first, 'you are #1 in line');
    expect(emulator.messagesIn('C0OUT', parent)[0]!.text).toBe('you are #1 in line');
    expect(emulator.callsTo('reactions.add')).toHaveLength(1);
    await output.finish();
    expect(emulator.callsTo('reactions.remove')).toHaveLength(1);
    expect(emulator.reactions).toEqual([]);
  });

  it('deletes a message it posted (a queue notice that could not become the answer, item 10)', async () => {
    const client = new webApi.WebClient(BOT_TOKEN, { slackApiUrl: emulator.apiUrl });
    const parent = emulator.nextTs();
    const output = new SlackThreadOutput(client, { channel: 'C0DEL', threadTs: parent });
    const notice = await output.send("I'm busy with other pictures; you're #3 in line.");
    expect(emulator.messagesIn('C0DEL', parent)).toHaveLength(1);
    await output.delete(notice);
    expect(emulator.messagesIn('C0DEL', parent)).toEqual([]);
    expect(emulator.callsTo('chat.delete')).toHaveLength(1);
  });
});

describe('small helpers', () => {
  it('claims each key once, also across aliases', () => {
    const once = new OnceFilter(3);
    expect(once.claim('event:1', 'message:C:1')).toBe(true);
    expect(once.claim('event:2', 'message:C:1')).toBe(false);
    expect(once.claim('event:1')).toBe(false);
    expect(once.claim('event:3')).toBe(true);
  });

  it('orders Slack timestamps exactly', () => {
    expect(compareSlackTs('1712345678.000200', '1712345678.000100')).toBe(1);
    expect(compareSlackTs('1712345678.9', '1712345679.000001')).toBe(-1);
    expect(compareSlackTs('1712345678.000100', '1712345678.000100')).toBe(0);
  });

  it('places answers in the thread, or in the DM itself', () => {
    expect(placeOf({ channel: 'C1', ts: '2.0' })).toEqual({
      conversation: 'C1:2.0',
      channel: 'C1',
      threadTs: '2.0',
    });
    expect(placeOf({ channel: 'C1', ts: '3.0', threadTs: '2.0' }).conversation).toBe('C1:2.0');
    expect(placeOf({ channel: 'D1', channelType: 'im', ts: '3.0' })).toEqual({
      conversation: 'D1',
      channel: 'D1',
    });
  });

  it('redacts tokens by shape and secrets by value', () => {
    expect(redact('token xoxb-123-abc and xapp-1-A-2 and s3cretvalue!', ['s3cretvalue'])).toBe(
      'token [redacted] and [redacted] and [redacted]!',
    );
  });
});
