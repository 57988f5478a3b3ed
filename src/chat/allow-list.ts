import type { AllowList } from './settings.js';
import type { ChatMessage } from './types.js';

/**
 * Every non-empty list must contain the message's id of that kind. A message without a server (a DM) therefore
 * fails a non-empty server list.
 */
export function isAllowed(message: ChatMessage, list: AllowList): boolean {
  const ok = (ids: readonly string[], id: string | undefined) =>
    ids.length === 0 || (!!id && ids.includes(id));
  return (
    ok(list.servers, message.server) && ok(list.channels, message.channel) && ok(list.users, message.user)
  );
}
