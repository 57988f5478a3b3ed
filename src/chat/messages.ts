/** Everything the bot says that is not a model answer, in one place so the tone stays consistent. */
export const DEMO_NOTICE =
  '⚠️ Demo model: this answer is random text, not a real description. Convert a real BLIP-2 model to get real answers.';

export const messages = {
  notAllowed: "Sorry, I'm not enabled here.",
  /** Said when no picture is known and the adapter's output names no way of its own (`ChatOutput.usageHint`). */
  noPicture: 'Send me a picture first, then ask about it (or ask nothing for a caption).',
  shuttingDown: 'The bot is restarting. Please ask again in a minute.',
  /** Heads an answer (or a refusal) delivered by another process because the one that took the message died. */
  resumed: '(The bot restarted while working on your message.)',
  lostInRestart: 'The bot restarted while answering you, and your request was lost. Please ask again.',
  timeout: 'Sorry, that took too long and was cancelled. Please try again.',
  expired: "I don't have that picture anymore (it expired from my memory). Please send it again.",
  emptyAnswer: '(The model gave an empty answer.)',
  failed: 'Sorry, something went wrong on my side. Please try again.',
  newSubject: 'New picture: I will answer about this one from now on.',
  rateLimited: (waitMs: number) =>
    `You're asking faster than I can keep up. Please wait ${Math.max(1, Math.ceil(waitMs / 1000))} s and try again.`,
  queued: (position: number) =>
    position <= 1
      ? "I'm busy with another picture; you're next in line. ⏳"
      : `I'm busy with other pictures; you're #${position} in line. ⏳`,
  severalImages: (count: number, name: string) =>
    `You sent ${count} pictures; I'm looking at the first one ("${name}"). Send the others one at a time to ask about them.`,
  droppedTurns: (count: number) =>
    `(Our conversation got long, so I no longer take the oldest ${count === 1 ? 'exchange' : `${count} exchanges`} into account.)`,
  questionTooLong: (max: number) => `That question is too long; please keep it under ${max} characters.`,
};
