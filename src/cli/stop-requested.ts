/**
 * Resolves with what asked the process to stop (SIGINT, SIGTERM, or `stop` when the embedder's signal aborts);
 * `cleanup` removes the listeners, so a command run several times in one process (tests, embedders) leaks none.
 */
export function stopRequested(signal: AbortSignal | undefined): {
  promise: Promise<string>;
  cleanup(): void;
} {
  let cleanup = () => {};
  const promise = new Promise<string>((resolve) => {
    const onSignal = (name: string) => () => resolve(name);
    const onInt = onSignal('SIGINT');
    const onTerm = onSignal('SIGTERM');
    const onAbort = () => resolve('stop');
    process.once('SIGINT', onInt);
    process.once('SIGTERM', onTerm);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) resolve('stop');
    cleanup = () => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      signal?.removeEventListener('abort', onAbort);
    };
  });
  return { promise, cleanup: () => cleanup() };
}
