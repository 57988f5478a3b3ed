/**
 * The Web API client's retry policy. On a 429 the WebClient itself waits the Retry-After seconds and then fails
 * the attempt; p-retry then added the policy's own exponential backoff on top (three 429s with Retry-After: 2
 * took 26 s instead of 6). Here the policy has no delay of its own: after a rate limit the next attempt goes out
 * at once, after any other failure (network, 5xx) `onFailedAttempt` waits as the old five-retries-in-five-minutes
 * policy did (1 s, 3.9 s, 15 s, 57 s, 222 s).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { webApi } from '@slack/bolt';

const RETRIES = 5;
const FIRST_DELAY_MS = 1000;
const FACTOR = 3.86;

/**
 * The WebClient's message for an attempt it failed after waiting Retry-After; it reaches p-retry wrapped in a
 * WebAPIRequestError ("A request error occurred: A rate limit was exceeded …", the first in `original`).
 */
const RATE_LIMITED = /A rate limit was exceeded/;

interface FailedAttempt {
  message: string;
  attemptNumber: number;
  original?: { message?: string };
}

export function backoffMs(attemptNumber: number): number {
  return Math.round(FIRST_DELAY_MS * FACTOR ** (attemptNumber - 1));
}

/** p-retry (which the WebClient hands these options to) awaits `onFailedAttempt` before the next attempt. */
type RetryPolicy = webApi.RetryOptions & {
  onFailedAttempt(error: FailedAttempt): Promise<void>;
};

export const SLACK_RETRY_POLICY: RetryPolicy = {
  retries: RETRIES,
  minTimeout: 0,
  maxTimeout: 0,
  factor: 1,
  randomize: false,
  onFailedAttempt: async (error) => {
    if (RATE_LIMITED.test(error.message) || RATE_LIMITED.test(error.original?.message ?? '')) return;
    await sleep(backoffMs(error.attemptNumber));
  },
};
