/** The Slack adapter's public surface: configuration from the environment and the running Bolt app. */

export { type RunningSlackAdapter, type StartSlackAdapterOptions, startSlackAdapter } from './adapter.js';
export {
  normaliseApiUrl,
  SLACK_DEFAULTS,
  type SlackConfig,
  type SlackMode,
  slackConfigFromEnv,
} from './config.js';
export { SlackFileAccessError } from './files.js';
export type { SlackAdapterLogger } from './logger.js';
