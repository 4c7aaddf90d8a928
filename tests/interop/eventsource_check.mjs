// Reads one sse-edge stream with the `eventsource` package, a WHATWG-spec
// EventSource for Node that reconnects by itself and sends Last-Event-ID.
//
// Usage: node eventsource_check.mjs URL EXPECTED_COUNT
//
// Collects every `message` event's data and lastEventId until it sees
// `[DONE]`, the source gives up (a non-200 answer closes it), more than
// EXPECTED_COUNT messages arrived (a relay replaying too much), or 20 s
// passed. Then prints one JSON line:
//   {"data":[...], "ids":[...], "errors":N, "end":"...", "error_messages":[...]}
// Nothing here asserts: tests/eventsource.rs owns the verdict.

import { EventSource } from 'eventsource';

const [url, expectedArg] = process.argv.slice(2);
const expected = Number.parseInt(expectedArg ?? '', 10);
if (!url || !Number.isFinite(expected)) {
  process.stderr.write('usage: node eventsource_check.mjs URL EXPECTED_COUNT\n');
  process.exit(2);
}

const data = [];
const ids = [];
const errorMessages = [];
let finished = false;

function finish(end) {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  source.close();
  const line = JSON.stringify({
    data,
    ids,
    errors: errorMessages.length,
    end,
    error_messages: errorMessages,
  });
  // Exit once the line is flushed: an aborted fetch may leave handles open.
  process.stdout.write(line + '\n', () => process.exit(0));
}

const timer = setTimeout(() => finish('timeout'), 20_000);
const source = new EventSource(url);

source.addEventListener('message', (e) => {
  data.push(e.data);
  ids.push(e.lastEventId);
  if (e.data === '[DONE]') finish('done');
  else if (data.length > expected) finish('too_many');
});

// Each error is a lost connection (a reconnect follows) or, with the
// source CLOSED, a refusal it will not retry.
source.addEventListener('error', (e) => {
  errorMessages.push(String(e.message ?? e.code ?? 'error'));
  if (source.readyState === EventSource.CLOSED) finish('closed');
});
