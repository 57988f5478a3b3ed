/**
 * What the playground shows of a conversation, kept server-side so a reload (or another tab with the same URL)
 * gets the thread back: the caption and every exchange with its timings. The chat core keeps its own state (the
 * image key and the turns the model sees); this is only the transcript.
 */
import type Keyv from 'keyv';
import type { ChatEvent, Timings } from '../../src/chat/types.js';

export interface ThreadTurn {
  /** null for the caption that opens a thread. */
  question: string | null;
  /** The model's answer. */
  answer: string;
  /** The core's remarks shown under it. */
  notes: string[];
  timings: Timings;
  imageCached: boolean;
  at: string;
}

export interface Thread {
  v: 1;
  id: string;
  imageName: string;
  createdAt: string;
  turns: ThreadTurn[];
}

function isThread(value: unknown): value is Thread {
  const v = value as Thread | undefined;
  return !!v && v.v === 1 && typeof v.id === 'string' && Array.isArray(v.turns);
}

export class ThreadStore {
  constructor(
    private readonly keyv: Keyv,
    private readonly ttlMs: number,
    private readonly maxTurns = 100,
  ) {}

  async get(id: string): Promise<Thread | undefined> {
    const value = await this.keyv.get(id);
    return isThread(value) ? value : undefined;
  }

  async append(id: string, imageName: string, turn: ThreadTurn): Promise<Thread> {
    const thread = (await this.get(id)) ?? {
      v: 1 as const,
      id,
      imageName,
      createdAt: turn.at,
      turns: [],
    };
    thread.turns = [...thread.turns, turn].slice(-this.maxTurns);
    await this.keyv.set(id, thread, this.ttlMs > 0 ? this.ttlMs : undefined);
    return thread;
  }
}

/** The transcript's turn for one of the core's answers. */
export function threadTurn(answered: Extract<ChatEvent, { type: 'answered' }>): ThreadTurn {
  return {
    question: answered.task === 'question' ? answered.question : null,
    answer: answered.answer.trim(),
    notes: answered.notes,
    timings: answered.result.timings,
    imageCached: answered.result.imageCached,
    at: new Date().toISOString(),
  };
}
