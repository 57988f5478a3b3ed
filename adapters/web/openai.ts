/**
 * OpenAI-compatible `POST /v1/chat/completions` and `GET /v1/models`, so the openai SDK, llmcord and chat
 * front-ends can talk to the bot. Each request is stateless, as OpenAI's: the client resends the conversation,
 * the latest picture in it is the subject, and the user/assistant turns after that picture become the BLIP-2
 * prompt's history. The picture's query embeddings come from the image cache when the same bytes come back, so a
 * follow-up skips the vision encoder.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ChatCore } from '../../src/chat/core.js';
import type { GenerationOptions, ImageQuestionEngine, IncomingImage, Turn } from '../../src/chat/types.js';
import { type Answered, ask } from './ask.js';
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
import { dataUrlImage, type Resolver, remoteImage } from './images.js';

export interface OpenAiContext {
  core: ChatCore;
  engine: Pick<ImageQuestionEngine, 'modelId' | 'demo'>;
  maxImageBytes: number;
  imageUrlHosts: readonly string[];
  resolver?: Resolver;
  isBlockedAddress?: (address: string) => boolean;
  clientId(req: IncomingMessage): string;
}

/** A conversation resends its picture every turn; a few pictures plus text fit. */
const imageEnvelope = (maxImageBytes: number) => Math.ceil((maxImageBytes * 4) / 3) * 2 + 256 * 1024;

interface ImagePart {
  url: string;
}

interface ParsedMessage {
  role: string;
  text: string;
  images: ImagePart[];
}

function invalid(message: string, code = 'invalid_request'): HttpError {
  return new HttpError(400, code, message);
}

function parseMessages(value: unknown): ParsedMessage[] {
  if (!Array.isArray(value) || value.length === 0) throw invalid('"messages" must be a non-empty array.');
  return value.map((raw, i) => {
    const m = raw as { role?: unknown; content?: unknown };
    if (!m || typeof m.role !== 'string') throw invalid(`messages[${i}].role must be a string.`);
    const texts: string[] = [];
    const images: ImagePart[] = [];
    if (typeof m.content === 'string') texts.push(m.content);
    else if (Array.isArray(m.content)) {
      for (const [j, p] of m.content.entries()) {
        const part = p as { type?: unknown; text?: unknown; image_url?: unknown };
        if (part?.type === 'text' && typeof part.text === 'string') texts.push(part.text);
        else if (part?.type === 'image_url') {
          const image = part.image_url as { url?: unknown } | string | undefined;
          const url = typeof image === 'string' ? image : image?.url;
          if (typeof url !== 'string')
            throw invalid(`messages[${i}].content[${j}].image_url.url must be a string.`);
          images.push({ url });
        } else {
          throw invalid(`messages[${i}].content[${j}] must be a text or image_url part.`);
        }
      }
    } else if (m.content !== null && m.content !== undefined) {
      throw invalid(`messages[${i}].content must be a string or an array of parts.`);
    }
    return { role: m.role, text: texts.join('\n').trim(), images };
  });
}

/** The latest picture, the turns about it (oldest first) and the question to answer now. */
export function conversationOf(messages: ParsedMessage[]): {
  image: ImagePart | undefined;
  history: Turn[];
  question: string;
} {
  const last = messages.at(-1);
  if (last?.role !== 'user') throw invalid('The last message must come from the user.');
  let start = 0;
  let image: ImagePart | undefined;
  messages.forEach((m, i) => {
    if (m.role === 'user' && m.images.length > 0) {
      image = m.images.at(-1);
      start = i;
    }
  });
  const history: Turn[] = [];
  for (let i = start; i < messages.length - 1; i++) {
    const m = messages[i]!;
    const next = messages[i + 1];
    // A picture sent without words was a caption request, not a turn of the conversation.
    if (m.role === 'user' && next?.role === 'assistant' && m.text) {
      history.push({ question: m.text, answer: next.text });
    }
  }
  return { image, history, question: last.text };
}

function numberField(body: Record<string, unknown>, name: string): number | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw invalid(`"${name}" must be a number.`, 'invalid_value');
  return v;
}

/**
 * OpenAI's knobs in the engine's terms. Without temperature or top_p the bot's own settings (LAVIS beam search)
 * apply; temperature 0 is greedy; a positive temperature or a top_p below 1 samples.
 */
export function optionsOf(body: Record<string, unknown>): GenerationOptions {
  const n = numberField(body, 'n');
  if (n !== undefined && n !== 1) throw invalid('Only n=1 is supported.', 'unsupported_value');
  const maxTokens = numberField(body, 'max_completion_tokens') ?? numberField(body, 'max_tokens');
  const temperature = numberField(body, 'temperature');
  const topP = numberField(body, 'top_p');
  const seed = numberField(body, 'seed');
  const options: GenerationOptions = {};
  if (maxTokens !== undefined) options.maxNewTokens = maxTokens;
  if (temperature === 0) {
    options.numBeams = 1;
    options.doSample = false;
  } else if (temperature !== undefined || (topP !== undefined && topP < 1)) {
    options.numBeams = 1;
    options.doSample = true;
    if (temperature !== undefined) options.temperature = temperature;
    if (topP !== undefined) options.topP = topP;
  }
  if (seed !== undefined) options.seed = seed;
  return options;
}

export class OpenAiApi {
  constructor(private readonly ctx: OpenAiContext) {}

  models(res: ServerResponse): void {
    sendJson(res, 200, {
      object: 'list',
      data: [{ id: this.ctx.engine.modelId, object: 'model', created: 0, owned_by: 'blip2-bot' }],
    });
  }

  private async image(part: ImagePart): Promise<IncomingImage> {
    if (part.url.startsWith('data:')) return dataUrlImage(part.url, this.ctx.maxImageBytes);
    return remoteImage(part.url, {
      hosts: this.ctx.imageUrlHosts,
      maxBytes: this.ctx.maxImageBytes,
      ...(this.ctx.resolver ? { resolver: this.ctx.resolver } : {}),
      ...(this.ctx.isBlockedAddress ? { isBlocked: this.ctx.isBlockedAddress } : {}),
    });
  }

  async completions(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (mediaType(req) !== 'application/json') {
      throw new HttpError(415, 'unsupported_media_type', 'Send the request as JSON.');
    }
    const body = parseJsonObject(await readBody(req, imageEnvelope(this.ctx.maxImageBytes)));
    const { image, history, question } = conversationOf(parseMessages(body.messages));
    const options = optionsOf(body);
    const stream = body.stream === true;
    const includeUsage =
      (body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
    const images = image ? [await this.image(image)] : [];

    const id = `chatcmpl-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const model = this.ctx.engine.modelId;
    // A conversation of its own, forgotten afterwards: the client holds the state.
    const conversation = `openai-${randomUUID()}`;
    let started = false;
    let sent = '';
    const chunk = (delta: object, finish: string | null, extra: object = {}) => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
      ...extra,
    });
    const start = () => {
      if (started) return;
      started = true;
      startEventStream(res);
      writeEvent(res, undefined, chunk({ role: 'assistant', content: '' }, null));
    };
    const push = (text: string) => {
      // Decoding a longer sequence can change the last characters; only a growing prefix is streamed.
      if (text.length <= sent.length || !text.startsWith(sent)) return;
      start();
      writeEvent(res, undefined, chunk({ content: text.slice(sent.length) }, null));
      sent = text;
    };

    let answered: Answered;
    try {
      answered = await ask(
        this.ctx.core,
        {
          platform: 'web',
          conversation,
          user: this.ctx.clientId(req),
          server: 'web',
          channel: 'web',
          text: question,
          images,
          addressed: true,
          messageId: randomUUID(),
          options,
          history,
        },
        stream ? { onToken: push } : {},
      );
    } catch (err) {
      if (!started || !(err instanceof HttpError)) throw err;
      writeEvent(res, undefined, errorBody(err, true));
      writeEvent(res, undefined, '[DONE]');
      res.end();
      return;
    } finally {
      await this.ctx.core.forget('web', conversation).catch(() => {});
    }

    const text = answered.answer.trim();
    const completionTokens = answered.result.ids.length;
    const finish =
      options.maxNewTokens !== undefined && completionTokens >= options.maxNewTokens ? 'length' : 'stop';
    const usage = {
      prompt_tokens: answered.result.promptTokens,
      completion_tokens: completionTokens,
      total_tokens: answered.result.promptTokens + completionTokens,
    };
    // Not OpenAI's: what the bot adds, for clients that care (the demo model's answers mean nothing).
    const blip2 = {
      demo: answered.result.demo,
      imageCached: answered.result.imageCached,
      timings: answered.result.timings,
      notes: answered.notes,
    };
    if (!stream) {
      sendJson(res, 200, {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [
          { index: 0, message: { role: 'assistant', content: text }, finish_reason: finish, logprobs: null },
        ],
        usage,
        blip2,
      });
      return;
    }
    start();
    if (text.startsWith(sent)) push(text);
    writeEvent(res, undefined, chunk({}, finish, { blip2 }));
    if (includeUsage) {
      writeEvent(res, undefined, { id, object: 'chat.completion.chunk', created, model, choices: [], usage });
    }
    writeEvent(res, undefined, '[DONE]');
    res.end();
  }
}
