/** The OpenAPI 3.1 description served at /api/v1/openapi.json. */

const error = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { type: 'string', examples: ['image_unsupported_type'] },
        message: {
          type: 'string',
          description: 'A polite message meant to be shown to the person as it is.',
        },
      },
    },
  },
};

const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
});

const errors = {
  '400': errorResponse('Bad input: invalid JSON or options, a damaged picture, a question too long.'),
  '401': errorResponse('WEB_API_KEY is set and the Bearer key is missing or wrong.'),
  '403': errorResponse('A cross-origin request from an origin not in WEB_CORS_ORIGINS.'),
  '413': errorResponse('The body or the picture is larger than MAX_IMAGE_MB (checked before reading).'),
  '415': errorResponse('Not a picture (PDF, text, ...), or a body that is neither multipart nor JSON.'),
  '429': {
    ...errorResponse('Too many requests from this key or address; Retry-After says when to try again.'),
    headers: { 'Retry-After': { schema: { type: 'integer' } } },
  },
  '503': errorResponse('The queue is full or the bot is restarting.'),
  '504': errorResponse('The request took longer than REQUEST_TIMEOUT_SECONDS.'),
};

const streamNote =
  'With `Accept: text/event-stream` the answer streams as server-sent events: `queued` ({position}, 1 = next), ' +
  '`token` ({text}: the answer so far; greedy and sampled answers only), then `answer` (the JSON body below) or ' +
  "`error` ({status, error}). A refusal that comes before any event keeps its HTTP status. A new conversation's stream carries its id in " +
  'the `X-Conversation-Id` header, so a client whose stream breaks can read the thread back later.';

const options = {
  type: 'object',
  description: 'Generation settings for this request; unset ones keep the bot defaults (LAVIS beam search).',
  properties: {
    numBeams: { type: 'integer', minimum: 1, maximum: 32 },
    maxNewTokens: { type: 'integer', minimum: 1, maximum: 512 },
    doSample: { type: 'boolean' },
    temperature: { type: 'number', exclusiveMinimum: 0 },
    topP: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
    topK: { type: 'integer', minimum: 0 },
    seed: { type: 'integer' },
  },
  additionalProperties: false,
};

const timings = {
  type: 'object',
  description: 'Milliseconds per stage; vision and Q-Former are 0 when the picture came from the cache.',
  properties: Object.fromEntries(
    [
      'queueMs',
      'preprocessMs',
      'visionMs',
      'qformerMs',
      'encoderMs',
      'decodeMs',
      'decodeSteps',
      'totalMs',
    ].map((k) => [k, { type: 'number' }]),
  ),
};

export function openApiDocument(modelId: string): unknown {
  return {
    openapi: '3.1.0',
    info: {
      title: 'blip2-bot web API',
      version: '1',
      description:
        'Talk about pictures with BLIP-2 through the same chat core as the Discord and Slack bots. ' +
        `Model: ${modelId}. Send "Authorization: Bearer <WEB_API_KEY>" when the server has a key.`,
    },
    servers: [{ url: '/' }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        Error: error,
        Options: options,
        Timings: timings,
        Answer: {
          type: 'object',
          required: ['conversation', 'answer', 'demo'],
          properties: {
            conversation: {
              type: 'string',
              description: 'The conversation id (the playground puts it in its URL).',
            },
            answer: {
              type: 'object',
              required: ['text', 'timings', 'imageCached'],
              properties: {
                text: { type: 'string' },
                question: { type: ['string', 'null'], description: 'null for a caption' },
                notes: { type: 'array', items: { type: 'string' } },
                timings: { $ref: '#/components/schemas/Timings' },
                imageCached: {
                  type: 'boolean',
                  description: 'The picture came from the cache (no vision run).',
                },
              },
            },
            demo: { type: 'boolean', description: 'The demo model runs: its answers are random.' },
          },
        },
      },
    },
    security: [{ bearer: [] }, {}],
    paths: {
      '/api/v1/conversations': {
        post: {
          summary: 'Start a conversation with a picture; without a question the answer is a caption.',
          description: streamNote,
          requestBody: {
            required: true,
            content: {
              'multipart/form-data': {
                schema: {
                  type: 'object',
                  required: ['image'],
                  properties: {
                    image: { type: 'string', format: 'binary' },
                    question: { type: 'string' },
                    options: { type: 'string', description: 'Options as JSON text.' },
                  },
                },
              },
              'application/json': {
                schema: {
                  type: 'object',
                  required: ['image'],
                  properties: {
                    image: { type: 'string', description: 'base64, or a data:image/...;base64, URL' },
                    imageName: { type: 'string' },
                    imageType: { type: 'string', examples: ['image/jpeg'] },
                    question: { type: 'string' },
                    options: { $ref: '#/components/schemas/Options' },
                  },
                },
              },
            },
          },
          responses: {
            '200': {
              description: 'The answer.',
              content: {
                'application/json': { schema: { $ref: '#/components/schemas/Answer' } },
                'text/event-stream': { schema: { type: 'string' } },
              },
            },
            ...errors,
          },
        },
      },
      '/api/v1/conversations/{id}/messages': {
        post: {
          summary: 'Ask a follow-up about the conversation picture (served from the image cache).',
          description: streamNote,
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
          requestBody: {
            required: true,
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  properties: {
                    question: { type: 'string' },
                    options: { $ref: '#/components/schemas/Options' },
                  },
                },
              },
            },
          },
          responses: {
            '200': {
              description: 'The answer.',
              content: { 'application/json': { schema: { $ref: '#/components/schemas/Answer' } } },
            },
            '404': errorResponse('No such conversation (or it expired).'),
            '410': errorResponse('The conversation picture expired from the cache; send it again.'),
            ...errors,
          },
        },
      },
      '/api/v1/conversations/{id}': {
        get: {
          summary: 'The turns of a conversation.',
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
          responses: {
            '200': {
              description: 'The thread.',
              content: {
                'application/json': {
                  schema: {
                    type: 'object',
                    properties: {
                      conversation: { type: 'string' },
                      imageName: { type: 'string' },
                      createdAt: { type: 'string', format: 'date-time' },
                      hasPicture: { type: 'boolean' },
                      demo: { type: 'boolean' },
                      turns: {
                        type: 'array',
                        items: {
                          type: 'object',
                          properties: {
                            question: { type: ['string', 'null'] },
                            answer: { type: 'string' },
                            notes: { type: 'array', items: { type: 'string' } },
                            timings: { $ref: '#/components/schemas/Timings' },
                            imageCached: { type: 'boolean' },
                            at: { type: 'string', format: 'date-time' },
                          },
                        },
                      },
                    },
                  },
                },
              },
            },
            '404': errorResponse('No such conversation (or it expired).'),
          },
        },
      },
      '/api/v1/health': {
        get: {
          summary: 'Whether the bot runs, which model, and the queue.',
          security: [],
          responses: {
            '200': {
              description: 'Health.',
              content: {
                'application/json': {
                  schema: {
                    type: 'object',
                    properties: {
                      status: { enum: ['ok', 'shutting_down'] },
                      model: { type: 'string' },
                      demo: { type: 'boolean' },
                      queue: {
                        type: 'object',
                        properties: { waiting: { type: 'integer' }, active: { type: 'integer' } },
                      },
                    },
                  },
                },
              },
            },
          },
        },
      },
      '/v1/chat/completions': {
        post: {
          summary: 'OpenAI-compatible chat completions with image_url parts (data: URLs, or listed hosts).',
          description:
            'Stateless: the latest picture in `messages` is the subject and the user/assistant turns after it are ' +
            'the history. Supports max_tokens / max_completion_tokens, temperature (0 = greedy, > 0 samples), ' +
            "top_p, seed, n=1 and stream (OpenAI chunks, stream_options.include_usage). Errors use OpenAI's " +
            'shape { error: { message, type, param, code } }.',
          responses: {
            '200': { description: 'A chat.completion object, or chat.completion.chunk events.' },
            ...errors,
          },
        },
      },
      '/v1/models': {
        get: {
          summary: 'The one model this bot runs.',
          responses: { '200': { description: 'A model list.' } },
        },
      },
    },
  };
}
