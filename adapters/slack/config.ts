/**
 * Slack settings come from the one configuration schema (src/config/config.ts), which lists every problem at once
 * with the bot's other variables; this module keeps the adapter's own entry point for embedders.
 */
import { type Env, parseSlackConfig, type SlackConfig } from '../../src/config/config.js';

export {
  normaliseApiUrl,
  SLACK_DEFAULTS,
  type SlackConfig,
  type SlackMode,
} from '../../src/config/config.js';

/** Undefined when no Slack credential is set; throws a ConfigError naming every variable to fix. */
export function slackConfigFromEnv(env: Env): SlackConfig | undefined {
  return parseSlackConfig(env);
}
