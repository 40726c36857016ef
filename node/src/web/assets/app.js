// The chat page. Every text from the network goes into the page as text
// (textContent), never as markup.
import { bars, steps } from './charts.js';

const $ = id => document.getElementById(id);
const PAGE = 100;
const MAX_TEXT = 255;

let first = null;   // lowest index shown
let last = -1;      // highest index shown (-1: none)
let source = null;  // the live stream
let loadingOlder = false;
let peerCount = 0;
const waiting = []; // chats sent from here, not yet seen mined

function say(text) { $('link').textContent = text; }

async function api(path, options) {
  const response = await fetch(path, options);
  if (response.status === 401) {
    say('not signed in: open the URL with the token that the node printed (or run `node url`)');
    throw new Error('no token');
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function row(chat) {
  const li = document.createElement('li');
  li.dataset.index = chat.index;
  if (chat.mined) li.classList.add('mine');
  const index = document.createElement('span');
  index.className = 'index';
  index.textContent = `#${chat.index}`;
  const time = document.createElement('time');
  time.className = 'time';
  if (chat.time) {
    const when = new Date(chat.time);
    time.dateTime = when.toISOString();
    time.textContent = when.toLocaleTimeString();
  }
  const text = document.createElement('span');
  text.className = 'text';
  text.textContent = chat.text;
  li.append(index, time, text);
  return li;
}

function atBottom(log) { return log.scrollHeight - log.scrollTop - log.clientHeight < 40; }

function append(chat) {
  if (chat.index <= last) return;
  const log = $('log');
  const stick = atBottom(log);
  $('chats').append(row(chat));
  last = chat.index;
  if (first === null) first = chat.index;
  if (stick) log.scrollTop = log.scrollHeight;
  if (chat.mined) sentMined(chat);
}

async function older() {
  if (loadingOlder || first === null || first === 0) return;
  loadingOlder = true;
  $('older').textContent = 'loading earlier chats…';
  try {
    const page = await api(`/api/hist?n=${PAGE}&before=${first}`);
    const log = $('log'), list = $('chats');
    const height = log.scrollHeight;
    const rows = page.chats.filter(c => c.index < first).map(row);
    list.prepend(...rows);
    if (page.chats.length) first = page.chats[0].index;
    log.scrollTop += log.scrollHeight - height;
    $('older').textContent = first === 0 ? 'the start of the history' : '';
  } catch (e) {
    $('older').textContent = `earlier chats could not be loaded: ${e.message}`;
  } finally {
    loadingOlder = false;
  }
}

function listen() {
  if (source) source.close();
  source = new EventSource(`/api/events?after=${last}`);
  source.onopen = () => say('live');
  source.onerror = () => {
    say('reconnecting…');
    if (source.readyState === EventSource.CLOSED) setTimeout(listen, 1000);
  };
  source.addEventListener('chat', e => append(JSON.parse(e.data)));
  source.addEventListener('switched', e => {
    const s = JSON.parse(e.data);
    for (const li of [...$('chats').children]) if (Number(li.dataset.index) >= s.from) li.remove();
    last = Math.min(last, s.from - 1);
    if (first !== null && first > last) first = last >= 0 ? first : null;
    const by = s.longer ? 'a longer history' : 'a rival history of the same length';
    const note = document.createElement('span');
    note.textContent = `${s.replaced} chats from #${s.from} on replaced by ${by}` +
      (s.displaced ? `; ${s.displaced} of yours will be mined again. ` : '. ');
    $('switches').append(note);
  });
  source.addEventListener('notice', e => {
    const note = document.createElement('span');
    note.textContent = JSON.parse(e.data).text + ' ';
    $('switches').append(note);
  });
  source.addEventListener('reset', () => { source.close(); source = null; start(); });
}

async function start() {
  try {
    const page = await api(`/api/hist?n=${PAGE}`);
    $('chats').replaceChildren();
    first = null; last = -1;
    page.chats.forEach(append);
    if (page.chats.length) first = page.chats[0].index;
    $('log').scrollTop = $('log').scrollHeight;
    listen();
  } catch (e) {
    if (e.message !== 'no token') say(`the node did not answer: ${e.message}; trying again`);
    setTimeout(start, 2000);
  }
}

// The send box: the prompt's rule, printable ASCII, 1 to 255 bytes.
function problem(text) {
  const bad = [...text].findIndex(c => c < ' ' || c > '~');
  if (bad >= 0) return `only printable ASCII can be sent (not the character at ${bad + 1})`;
  const trimmed = text.trim();
  if (!trimmed) return 'type a chat first';
  if (trimmed.length > MAX_TEXT) return `at most ${MAX_TEXT} bytes (this is ${trimmed.length})`;
  return '';
}

function count() {
  const text = $('text').value;
  $('count').textContent = `${text.length}/${MAX_TEXT}`;
  $('problem').textContent = text ? problem(text) : '';
}

function sentRow(text) {
  const li = document.createElement('li');
  const what = document.createElement('span');
  what.textContent = text;
  const state = document.createElement('span');
  state.className = 'state';
  state.textContent = ': waiting';
  li.append(what, state);
  $('sent').prepend(li);
  while ($('sent').children.length > 5) $('sent').lastChild.remove();
  return { text, state };
}

function sentMined(chat) {
  const at = waiting.findIndex(w => w.text === chat.text);
  if (at < 0) return;
  const [entry] = waiting.splice(at, 1);
  entry.state.textContent = `: mined as #${chat.index}, sent to ${peerCount} peers`;
}

async function send(event) {
  event.preventDefault();
  const input = $('text');
  const why = problem(input.value);
  if (why) { $('problem').textContent = why; return; }
  const text = input.value.trim();
  input.value = '';
  count();
  const entry = sentRow(text);
  waiting.push(entry);
  try {
    const reply = await api('/api/chat', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ text }),
    });
    if (reply.reply === 'not_saved') entry.state.textContent = `: not saved (${reply.reason}); mined all the same`;
    else if (waiting.includes(entry)) entry.state.textContent = ': saved, waiting to be mined';
  } catch (e) {
    waiting.splice(waiting.indexOf(entry), 1);
    entry.state.textContent = `: refused: ${e.message}`;
  }
}

function since(seconds) {
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  return `${Math.floor(s / 3600)}h ago`;
}

function fill(list, pairs) {
  list.replaceChildren(...pairs.flatMap(([k, v]) => {
    const dt = document.createElement('dt'); dt.textContent = k;
    const dd = document.createElement('dd'); dd.textContent = v;
    return [dt, dd];
  }));
}

async function status() {
  try {
    const s = await api('/api/status');
    peerCount = s.peers;
    const rate = s.last_job && s.last_job.elapsed_s > 0
      ? `${(s.last_job.tries / s.last_job.elapsed_s / 1e6).toFixed(1)} MH/s` : 'none yet';
    fill($('status'), [
      ['address', `${s.bind}:${s.port}`],
      ['peers', s.peers],
      ['history', `${s.history} chats`],
      ['on disk', `${s.stored} chats`],
      ['pending', `${s.pending} chats`],
      ['mining', s.mining ? `${s.mining.chats} chats` : `idle (${s.threads} threads)`],
      ['last job', rate],
    ]);
    const p = await api('/api/peers');
    $('peers').tBodies[0].replaceChildren(...p.peers.map(peer => {
      const tr = document.createElement('tr');
      for (const v of [peer.addr, peer.direction, since(peer.connected_for_s), peer.bytes_in, peer.bytes_out]) {
        const td = document.createElement('td'); td.textContent = v; tr.append(td);
      }
      return tr;
    }));
  } catch (e) { /* said by the live stream's state */ }
}

async function charts() {
  try {
    const c = await api('/api/charts');
    bars($('rate'), c.minutes, '60 minutes ago → now');
    steps($('peers-chart'), c.peers, c.now, 3600, '1 hour ago → now');
  } catch (e) { /* as status */ }
}

$('send').addEventListener('submit', send);
$('text').addEventListener('input', count);
$('log').addEventListener('scroll', () => { if ($('log').scrollTop < 80) older(); });
start();
status();
charts();
setInterval(status, 2000);
setInterval(charts, 10000);
