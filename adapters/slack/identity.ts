/**
 * Who the bot is, asked once at start with auth.test: a bad token or an unreachable API fails the start with a
 * message that says what to fix, and the ids it returns spare Bolt its own lazy check.
 */
import { type Logger as BoltLogger, webApi } from '@slack/bolt';
import { slackErrorCode } from './output.js';

export interface SlackIdentity {
  botUserId: string;
  botId: string;
  teamId?: string;
  team?: string;
  name?: string;
}

/** Turns a failed start-up call into an error naming the setting to check. */
export function describeStartError(error: unknown, setting: string, apiUrl: string): Error {
  const code = slackErrorCode(error);
  if (code) {
    return new Error(
      `Slack rejected ${setting} (${code}). Copy it again from your app's settings page ` +
        '(https://api.slack.com/apps) and make sure the app is installed to the workspace.',
      { cause: error },
    );
  }
  const reason = error instanceof Error ? error.message : String(error);
  return new Error(`Could not reach the Slack Web API at ${apiUrl}: ${reason}`, { cause: error });
}

export async function fetchSlackIdentity(
  botToken: string,
  options: { apiUrl?: string; logger: BoltLogger },
): Promise<SlackIdentity> {
  const apiUrl = options.apiUrl ?? 'https://slack.com/api/';
  // Few, quick retries: at start-up a wrong URL should fail in seconds, not after the default half hour.
  const client = new webApi.WebClient(botToken, {
    ...(options.apiUrl ? { slackApiUrl: options.apiUrl } : {}),
    logger: options.logger,
    retryConfig: { retries: 1, minTimeout: 300, maxTimeout: 1000 },
    timeout: 15_000,
  });
  let auth: Awaited<ReturnType<typeof client.auth.test>>;
  try {
    auth = await client.auth.test();
  } catch (error) {
    throw describeStartError(error, 'SLACK_BOT_TOKEN', apiUrl);
  }
  if (!auth.user_id || !auth.bot_id) {
    throw new Error(
      'SLACK_BOT_TOKEN is not a bot token (auth.test returned no bot id). Use the xoxb- token.',
    );
  }
  return {
    botUserId: auth.user_id,
    botId: auth.bot_id,
    ...(auth.team_id ? { teamId: auth.team_id } : {}),
    ...(auth.team ? { team: auth.team } : {}),
    ...(auth.user ? { name: auth.user } : {}),
  };
}
