/**
 * The one "wait for running jobs, up to a grace period" of the code base (the chat core's shutdown, the Discord
 * and Slack adapters' stop, a worker's drain). Jobs that start while waiting are waited for too, so a drain
 * never returns while work it should have seen is still running.
 */

/**
 * Resolves `'done'` once every job in `jobs` has settled (rejections included, never thrown), or `'timeout'`
 * after `graceMs`, whichever comes first. `jobs` is read again after each round, so a live Set works.
 */
export async function waitWithGrace(
  jobs: Iterable<Promise<unknown>> | (() => Iterable<Promise<unknown>>),
  graceMs: number,
): Promise<'done' | 'timeout'> {
  const current = () => [...(typeof jobs === 'function' ? jobs() : jobs)];
  const settled = (async () => {
    for (let round = current(); round.length > 0; round = current()) {
      await Promise.allSettled(round);
      const next = current();
      if (next.length === round.length && next.every((job, i) => job === round[i])) break;
    }
    return 'done' as const;
  })();
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), Math.max(0, graceMs));
  });
  try {
    return await Promise.race([settled, grace]);
  } finally {
    clearTimeout(timer);
  }
}
