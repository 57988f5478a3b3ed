/**
 * The model's thread: loads a `Blip2Engine` and serves `ThreadedEngine`'s messages. onnxruntime-node's
 * `session.run` holds its JavaScript thread for the whole run, so the model gets a thread of its own and the
 * adapters' event loop (Slack acks, Discord heartbeats, HTTP) keeps running.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Blip2Engine } from './engine.js';
import { toWire } from './error-wire.js';
import { preprocessCacheTag } from './preprocess.js';
import type { FromThread, ThreadInit, ToThread } from './thread-protocol.js';

const port = parentPort;
if (!port) throw new Error('engine-thread.ts runs only as a worker thread (see threaded-engine.ts)');
const init = workerData as ThreadInit;
const post = (message: FromThread) => port.postMessage(message);

let engine: Blip2Engine;
try {
  engine = await Blip2Engine.load(init.modelDir, {
    ...init.options,
    logger: {
      info: (message) => post({ type: 'log', level: 'info', message }),
      warn: (message) => post({ type: 'log', level: 'warn', message }),
    },
  });
} catch (error) {
  post({ type: 'load-failed', error: toWire(error) });
  port.close();
  process.exit(0);
}

const running = new Map<number, AbortController>();

async function serve(id: number, work: (signal: AbortSignal) => Promise<FromThread & { type: 'result' }>) {
  const controller = new AbortController();
  running.set(id, controller);
  try {
    post(await work(controller.signal));
  } catch (error) {
    post({ type: 'error', id, error: toWire(error), queueLength: engine.queueLength });
  } finally {
    running.delete(id);
  }
}

port.on('message', (message: ToThread) => {
  switch (message.type) {
    case 'generate': {
      const { wantTokens, wantPositions, ...request } = message.request;
      const id = message.id;
      void serve(id, async (signal) => ({
        type: 'result',
        id,
        value: await engine.generate({
          ...request,
          signal,
          ...(wantTokens ? { onToken: (token) => post({ type: 'token', id, token }) } : {}),
          ...(wantPositions
            ? {
                onQueuePosition: (position) =>
                  post({ type: 'position', id, position, queueLength: engine.queueLength }),
              }
            : {}),
        }),
        queueLength: engine.queueLength,
      }));
      break;
    }
    case 'encode': {
      const id = message.id;
      void serve(id, async (signal) => ({
        type: 'result',
        id,
        value: await engine.encodeImageDetailed(message.bytes, { signal }),
        queueLength: engine.queueLength,
      }));
      break;
    }
    case 'cancel':
      running.get(message.id)?.abort();
      break;
    case 'close':
      void engine.close().finally(() => {
        post({ type: 'closed' });
        port.close();
      });
      break;
  }
});

post({
  type: 'ready',
  demo: engine.demo,
  modelId: engine.modelId,
  cacheTag: preprocessCacheTag(init.options.preprocess),
});
