export {
  type DiscordAdapterOptions,
  type DiscordChatCore,
  NO_CONTENT_NOTICE,
  type RunningDiscordAdapter,
  startDiscordAdapter,
} from './adapter.js';
export { createDiscordClient, restBase } from './client.js';
export { commandDefinitions, DESCRIBE_COMMAND } from './commands.js';
