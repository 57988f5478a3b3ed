/** The application commands the Discord adapter answers; `register-commands.ts` publishes exactly these. */
import {
  ApplicationIntegrationType,
  InteractionContextType,
  type RESTPostAPIChatInputApplicationCommandsJSONBody,
  SlashCommandBuilder,
} from 'discord.js';

export const DESCRIBE_COMMAND = 'describe';
export const IMAGE_OPTION = 'image';
export const QUESTION_OPTION = 'question';

export function commandDefinitions(): RESTPostAPIChatInputApplicationCommandsJSONBody[] {
  const describe = new SlashCommandBuilder()
    .setName(DESCRIBE_COMMAND)
    .setDescription('Describe a picture, or answer a question about it')
    .addAttachmentOption((option) =>
      option.setName(IMAGE_OPTION).setDescription('The picture (PNG, JPEG, WebP or GIF)').setRequired(true),
    )
    .addStringOption((option) =>
      option
        .setName(QUESTION_OPTION)
        .setDescription('What you want to know; leave empty for a caption')
        .setMaxLength(1000)
        .setRequired(false),
    )
    .setIntegrationTypes(ApplicationIntegrationType.GuildInstall)
    .setContexts(InteractionContextType.Guild, InteractionContextType.BotDM);
  return [describe.toJSON()];
}
