/**
 * The JSON API under /api/v1 (the playground uses it too): start a conversation with a picture, follow up, read a
 * thread back, and the health check. With `Accept: text/event-stream` the answer streams: `queued` events with
 * the place in line, `token` events, then `answer` (or `error`).
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ChatCore } from '../../src/chat/core.js';
import type {
  ChatMessage,
  GenerationOptions,
  ImageQuestionEngine,
  IncomingImage,
} from '../../src/chat/types.js';
import { type Answered, type AskHooks, ask } from './ask.js';
import {
  errorBody,
  HttpError,
  mediaType,
  parseJsonObject,
  readBody,
  sendJson,
  startEventStream,
  writeEvent,
} from './http.js';
import { bytesImage, decodeBase64 } from './images.js';
import { webResumeTarget } from './resume.js';
import { type ThreadStore, threadTurn } from './threads.js';

export interface ApiContext {
  core: ChatCore;
  engine: Pick<ImageQuestionEngine, 'modelId' | 'demo' | 'queueLength'>;
  threads: ThreadStore;
  maxImageBytes: number;
  /** Who is asking, for the core's rate limit. */
  clientId(req: IncomingMessage): string;
  isClosing(): boolean;
}

/**
 * A new conversation's id, sent with the first event of a stream: should the front die before the answer, the
 * client still knows the thread that another front records the answer in (scaled out).
 */
const CONVERSATION_HEADER = (id: string) => ({ 'x-conversation-id': id });

/** Room for the form fields and JSON around the picture. */
const ENVELOPE_BYTES = 64 * 1024;
const FOLLOW_UP_BYTES = 64 * 1024;

/** Generation settings a request may choose, with the type each must have. */
const OPTION_TYPES: Record<string, 'number' | 'boolean'> = {
  numBeams: 'number',
  maxNewTokens: 'number',
  doSample: 'boolean',
  temperature: 'number',
  topP: 'number',
  topK: 'number',
  seed: 'number',
};

export function parseOptions(value: unknown): GenerationOptions | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new HttpError(400, 'invalid_options', '"options" must be an object such as {"numBeams": 1}.');
  }
  const options: Record<string, unknown> = {};
  for (const [name, v] of Object.entries(value)) {
    const type = OPTION_TYPES[name];
    if (!type) {
      throw new HttpError(
        400,
        'invalid_options',
        `Unknown option "${name}"; the options are ${Object.keys(OPTION_TYPES).join(', ')}.`,
      );
    }
    if (typeof v !== type) throw new HttpError(400, 'invalid_options', `"${name}" must be a ${type}.`);
    options[name] = v;
  }
  return options as GenerationOptions;
}

function questionOf(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string') throw new HttpError(400, 'invalid_question', '"question" must be a string.');
  return value;
}

interface NewConversation {
  image: IncomingImage;
  question: string;
  options: GenerationOptions | undefined;
}

async function readNewConversation(req: IncomingMessage, maxImageBytes: number): Promise<NewConversation> {
  const type = mediaType(req);
  if (type === 'multipart/form-data') {
    const body = await readBody(req, maxImageBytes + ENVELOPE_BYTES);
    let form: FormData;
    try {
      // Parsed only once the capped body is in memory.
      form = await new Request('http://localhost/', {
        method: 'POST',
        headers: { 'content-type': req.headers['content-type'] ?? '' },
        body,
      }).formData();
    } catch {
      throw new HttpError(400, 'invalid_form', 'The form data could not be read.');
    }
    const file = form.get('image');
    if (!file || typeof file === 'string') {
      throw new HttpError(400, 'no_picture', 'Please attach a picture in the "image" field.');
    }
    const options = form.get('options');
    let parsedOptions: unknown;
    if (typeof options === 'string' && options.trim()) {
      try {
        parsedOptions = JSON.parse(options);
      } catch {
        throw new HttpError(400, 'invalid_options', '"options" must be JSON such as {"numBeams": 1}.');
      }
    }
    return {
      image: bytesImage(file.name, new Uint8Array(await file.arrayBuffer()), file.type),
      question: questionOf(form.get('question') ?? undefined),
      options: parseOptions(parsedOptions),
    };
  }
  if (type === 'application/json') {
    const base64Cap = Math.ceil((maxImageBytes * 4) / 3) + ENVELOPE_BYTES;
    const json = parseJsonObject(await readBody(req, base64Cap));
    if (typeof json.image !== 'string' || !json.image) {
      throw new HttpError(400, 'no_picture', 'Please send the picture as base64 in the "image" field.');
    }
    const name = typeof json.imageName === 'string' && json.imageName ? json.imageName : 'picture';
    let data = json.image;
    let declared = typeof json.imageType === 'string' ? json.imageType : undefined;
    const dataUrl = /^data:([^;,]*);base64,/i.exec(data);
    if (dataUrl) {
      declared ??= dataUrl[1];
      data = data.slice(dataUrl[0].length);
    }
    return {
      image: bytesImage(name, decodeBase64(data, maxImageBytes, name), declared),
      question: questionOf(json.question),
      options: parseOptions(json.options),
    };
  }
  throw new HttpError(
    415,
    'unsupported_media_type',
    'Send the picture as multipart/form-data (field "image") or as JSON with base64 in "image".',
  );
}

function answerBody(id: string, answered: Answered, demo: boolean) {
  return {
    conversation: id,
    answer: {
      text: answered.answer.trim(),
      question: answered.question || null,
      notes: answered.notes,
      timings: answered.result.timings,
      imageCached: answered.result.imageCached,
    },
    demo,
  };
}

function wantsStream(req: IncomingMessage): boolean {
  return (req.headers.accept ?? '').includes('text/event-stream');
}

/**
 * Runs `work` and answers with JSON, or with events when the client asked for them. A refusal that comes before
 * anything was streamed keeps its own status; one after it arrives as an `error` event.
 */
async function respond(
  req: IncomingMessage,
  res: ServerResponse,
  work: (hooks: AskHooks) => Promise<unknown>,
  streamHeaders: Record<string, string> = {},
): Promise<void> {
  if (!wantsStream(req)) {
    sendJson(res, 200, await work({}));
    return;
  }
  let started = false;
  const start = () => {
    if (!started) startEventStream(res, streamHeaders);
    started = true;
  };
  try {
    const body = await work({
      onQueued: (position) => {
        start();
        writeEvent(res, 'queued', { position });
      },
      onToken: (text) => {
        start();
        writeEvent(res, 'token', { text });
      },
    });
    start();
    writeEvent(res, 'answer', body);
  } catch (err) {
    if (!started || !(err instanceof HttpError)) throw err;
    writeEvent(res, 'error', { status: err.status, ...(errorBody(err) as object) });
  }
  res.end();
}

export class ConversationApi {
  constructor(private readonly ctx: ApiContext) {}

  private message(req: IncomingMessage, id: string, text: string, extra: Partial<ChatMessage>): ChatMessage {
    return {
      platform: 'web',
      conversation: id,
      user: this.ctx.clientId(req),
      // Allow-lists name `web` to let the web adapter in (web requests have no guild, team or channel).
      server: 'web',
      channel: 'web',
      text,
      images: [],
      addressed: true,
      messageId: randomUUID(),
      ...extra,
    };
  }

  private async record(id: string, answered: Answered): Promise<void> {
    await this.ctx.threads.append(id, answered.imageName, threadTurn(answered));
  }

  async create(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const input = await readNewConversation(req, this.ctx.maxImageBytes);
    const id = randomUUID();
    await respond(
      req,
      res,
      async (hooks) => {
        const answered = await ask(
          this.ctx.core,
          this.message(req, id, input.question, {
            images: [input.image],
            ...(input.options ? { options: input.options } : {}),
          }),
          hooks,
          webResumeTarget(id),
        );
        await this.record(id, answered);
        return answerBody(id, answered, this.ctx.engine.demo);
      },
      CONVERSATION_HEADER(id),
    );
  }

  async followUp(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    if (mediaType(req) !== 'application/json') {
      throw new HttpError(415, 'unsupported_media_type', 'Send the follow-up as JSON: {"question": "..."}.');
    }
    const json = parseJsonObject(await readBody(req, FOLLOW_UP_BYTES));
    const question = questionOf(json.question);
    const options = parseOptions(json.options);
    if (!(await this.ctx.threads.get(id))) throw notFound(id);
    await respond(req, res, async (hooks) => {
      const answered = await ask(
        this.ctx.core,
        this.message(req, id, question, options ? { options } : {}),
        hooks,
        webResumeTarget(id),
      );
      await this.record(id, answered);
      return answerBody(id, answered, this.ctx.engine.demo);
    });
  }

  async get(res: ServerResponse, id: string): Promise<void> {
    const thread = await this.ctx.threads.get(id);
    if (!thread) throw notFound(id);
    const hasPicture = await this.ctx.core.hasPicture('web', id);
    sendJson(res, 200, {
      conversation: thread.id,
      imageName: thread.imageName,
      createdAt: thread.createdAt,
      // False once the picture expired from the bot's memory: a follow-up then needs the picture again.
      hasPicture,
      turns: thread.turns,
      demo: this.ctx.engine.demo,
    });
  }

  health(res: ServerResponse): void {
    sendJson(res, 200, {
      status: this.ctx.isClosing() ? 'shutting_down' : 'ok',
      model: this.ctx.engine.modelId,
      demo: this.ctx.engine.demo,
      queue: { waiting: this.ctx.engine.queueLength, active: this.ctx.core.activeJobs },
    });
  }
}

function notFound(id: string): HttpError {
  return new HttpError(
    404,
    'conversation_not_found',
    `I don't know conversation ${id.slice(0, 64)} (it may have expired). Please start again with a picture.`,
  );
}
