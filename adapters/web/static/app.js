// The playground: one picture per thread, its caption first, then questions. The thread lives on the server
// (its id is in the URL as ?c=), so a reload shows it again. No build step: plain ES module.
const $ = (id) => document.getElementById(id);
const els = {
  model: $('model'),
  demo: $('demo'),
  keyForm: $('key-form'),
  key: $('key'),
  drop: $('drop'),
  preview: $('preview'),
  dropText: $('drop-text'),
  file: $('file'),
  newPicture: $('new'),
  thread: $('thread'),
  status: $('status'),
  ask: $('ask'),
  question: $('question'),
  send: $('send'),
  beams: $('beams'),
  maxTokens: $('max-tokens'),
  sample: $('sample'),
  temperature: $('temperature'),
};

let conversation = new URLSearchParams(location.search).get('c');
let busy = false;

function headers(extra = {}) {
  const key = localStorage.getItem('blip2-bot-key');
  return key ? { ...extra, authorization: `Bearer ${key}` } : extra;
}

function options() {
  const o = {};
  const beams = Number.parseInt(els.beams.value, 10);
  const maxTokens = Number.parseInt(els.maxTokens.value, 10);
  if (beams > 0) o.numBeams = beams;
  if (maxTokens > 0) o.maxNewTokens = maxTokens;
  if (els.sample.checked) {
    o.doSample = true;
    o.numBeams ??= 1;
    const t = Number.parseFloat(els.temperature.value);
    if (t > 0) o.temperature = t;
  }
  return o;
}

function describeTimings(t, cached) {
  const ms = (v) => `${Math.round(v)} ms`;
  const parts = [`total ${ms(t.totalMs)}`, `queue ${ms(t.queueMs)}`];
  if (!cached) parts.push(`vision ${ms(t.visionMs)}`, `Q-Former ${ms(t.qformerMs)}`);
  parts.push(`encoder ${ms(t.encoderMs)}`, `${t.decodeSteps} steps in ${ms(t.decodeMs)}`);
  parts.push(cached ? 'picture from the cache' : 'picture encoded');
  return parts.join(' · ');
}

function add(kind, text) {
  const li = document.createElement('li');
  li.className = kind;
  const p = document.createElement('p');
  p.textContent = text;
  li.append(p);
  els.thread.append(li);
  li.scrollIntoView({ block: 'nearest' });
  return li;
}

/** One answer with its notes and timings; `echo` also shows the question (a restored thread). */
function showTurn(turn, echo = true) {
  if (echo && turn.question) add('you', turn.question);
  const text = (turn.text ?? turn.answer) || '(The model gave an empty answer.)';
  const li = add(turn.question ? 'bot' : 'bot caption', text);
  for (const note of turn.notes ?? []) {
    const n = document.createElement('p');
    n.className = 'note';
    n.textContent = note;
    li.append(n);
  }
  const meta = document.createElement('p');
  meta.className = 'meta';
  meta.textContent = describeTimings(turn.timings, turn.imageCached);
  li.append(meta);
}

function setBusy(value, text = '') {
  busy = value;
  els.status.textContent = text;
  els.send.disabled = value || !conversation;
  els.question.disabled = !conversation;
  els.file.disabled = value;
}

function setPicture(src, name) {
  els.preview.hidden = !src;
  if (src) els.preview.src = src;
  els.preview.alt = name ? `The picture: ${name}` : '';
  els.dropText.textContent = name
    ? `${name} — choose, drop or paste another`
    : 'Choose, drop or paste a picture';
  els.newPicture.hidden = !conversation;
}

// Server-sent events over fetch (EventSource cannot POST): queued, token, answer, error.
async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += value;
    let end = buffer.indexOf('\n\n');
    while (end >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message';
      let data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      onEvent(event, JSON.parse(data));
      end = buffer.indexOf('\n\n');
    }
  }
}

/** Sends one request and shows what happens: place in line, the growing answer, then the answer or the error. */
async function request(url, init, onConversation) {
  setBusy(true, 'Working on it…');
  let partial;
  let result;
  try {
    const response = await fetch(url, {
      ...init,
      headers: headers({ ...init.headers, accept: 'text/event-stream' }),
    });
    if (response.status === 401) els.keyForm.hidden = false;
    if ((response.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
      // Known before the answer: if the stream breaks (the bot restarted), a reload reads the thread back.
      const id = response.headers.get('x-conversation-id');
      if (id) onConversation?.(id);
      await readEvents(response, (event, data) => {
        if (event === 'queued') {
          els.status.textContent =
            data.position <= 1
              ? "The bot is busy with another picture; you're next in line."
              : `The bot is busy with other pictures; you're #${data.position} in line.`;
        } else if (event === 'token') {
          els.status.textContent = 'Answering…';
          partial ??= add('bot partial', '');
          partial.firstChild.textContent = data.text;
        } else if (event === 'answer') result = data;
        else if (event === 'error') add('bot error', data.error.message);
      });
    } else {
      const body = await response.json();
      if (response.ok) result = body;
      else add('bot error', body.error?.message ?? `The server answered ${response.status}.`);
    }
  } catch {
    add('bot error', 'The server could not be reached. Is the bot still running?');
  } finally {
    partial?.remove();
    setBusy(false);
  }
  return result;
}

async function thumbnail(file) {
  try {
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(1, 320 / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement('canvas');
    canvas.width = Math.round(bitmap.width * scale);
    canvas.height = Math.round(bitmap.height * scale);
    canvas.getContext('2d').drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    return canvas.toDataURL('image/jpeg', 0.8);
  } catch {
    return undefined;
  }
}

async function upload(file) {
  if (busy || !file) return;
  // A new picture starts a new thread.
  conversation = null;
  history.replaceState(null, '', location.pathname);
  els.thread.replaceChildren();
  const thumb = await thumbnail(file);
  setPicture(thumb, file.name);
  const form = new FormData();
  form.append('image', file, file.name);
  const question = els.question.value.trim();
  if (question) form.append('question', question);
  form.append('options', JSON.stringify(options()));
  if (question) add('you', question);
  const remember = (id) => {
    conversation = id;
    history.replaceState(null, '', `?c=${encodeURIComponent(conversation)}`);
    sessionStorage.setItem(`blip2-bot-name:${conversation}`, file.name);
    if (thumb) sessionStorage.setItem(`blip2-bot-thumb:${conversation}`, thumb);
  };
  const result = await request('/api/v1/conversations', { method: 'POST', body: form }, remember);
  if (!result) return;
  remember(result.conversation);
  els.question.value = '';
  showTurn(result.answer, false);
  setPicture(thumb, file.name);
  setBusy(false);
  els.question.focus();
}

async function ask(event) {
  event.preventDefault();
  if (busy || !conversation) return;
  const question = els.question.value.trim();
  if (question) add('you', question);
  els.question.value = '';
  const result = await request(`/api/v1/conversations/${encodeURIComponent(conversation)}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ question, options: options() }),
  });
  if (result) showTurn(result.answer, false);
  els.question.focus();
}

async function restore() {
  if (!conversation) return;
  const response = await fetch(`/api/v1/conversations/${encodeURIComponent(conversation)}`, {
    headers: headers(),
  });
  if (response.status === 401) els.keyForm.hidden = false;
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    add('bot error', body.error?.message ?? 'That conversation is gone. Choose a picture to start again.');
    conversation = null;
    history.replaceState(null, '', location.pathname);
    return;
  }
  const thread = await response.json();
  for (const turn of thread.turns) showTurn(turn);
  setPicture(sessionStorage.getItem(`blip2-bot-thumb:${conversation}`), thread.imageName);
  if (!thread.hasPicture) add('bot note', 'I no longer have this picture; choose it again to keep asking.');
}

async function health() {
  try {
    const h = await (await fetch('/api/v1/health')).json();
    els.model.textContent = `Model: ${h.model}`;
    els.demo.hidden = !h.demo;
  } catch {
    els.model.textContent = 'The server could not be reached.';
  }
}

els.file.addEventListener('change', () =>
  upload(els.file.files[0]).finally(() => {
    els.file.value = '';
  }),
);
els.ask.addEventListener('submit', ask);
els.newPicture.addEventListener('click', () => els.file.click());
els.keyForm.addEventListener('submit', (event) => {
  event.preventDefault();
  localStorage.setItem('blip2-bot-key', els.key.value.trim());
  els.keyForm.hidden = true;
});
for (const name of ['dragenter', 'dragover']) {
  els.drop.addEventListener(name, (event) => {
    event.preventDefault();
    els.drop.classList.add('over');
  });
}
els.drop.addEventListener('dragleave', () => els.drop.classList.remove('over'));
els.drop.addEventListener('drop', (event) => {
  event.preventDefault();
  els.drop.classList.remove('over');
  upload(event.dataTransfer.files[0]);
});
document.addEventListener('paste', (event) => {
  const file = [...(event.clipboardData?.files ?? [])][0];
  if (file) upload(file);
});

await health();
await restore();
setBusy(false);
