/** A ChatOutput for tests: it keeps every message the core posted and every edit. */
import type { ChatOutput, PostedMessage } from '../../src/chat/types.js';

export interface RecordedMessage {
  id: string;
  text: string;
  history: string[];
}

export class RecordingOutput implements ChatOutput {
  readonly messages: RecordedMessage[] = [];
  typing = 0;
  private next = 1;

  constructor(
    readonly maxMessageLength = 2000,
    readonly canEdit = true,
  ) {}

  async send(text: string): Promise<PostedMessage> {
    if (text.length > this.maxMessageLength)
      throw new Error(`message of ${text.length} chars is over the limit`);
    const message = { id: String(this.next++), text, history: [text] };
    this.messages.push(message);
    return { id: message.id };
  }

  async edit(posted: PostedMessage, text: string): Promise<void> {
    if (!this.canEdit) throw new Error('edit not supported');
    const message = this.messages.find((m) => m.id === posted.id);
    if (!message) throw new Error(`no message ${posted.id}`);
    message.text = text;
    message.history.push(text);
  }

  async showTyping(): Promise<void> {
    this.typing++;
  }

  get texts(): string[] {
    return this.messages.map((m) => m.text);
  }

  get all(): string {
    return this.texts.join('\n');
  }
}
