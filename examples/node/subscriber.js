// A tickmesh subscriber written from docs/wire.md alone: every published event in sequence order,
// gaps filled from the aggregator's replay ring, one JSON object per event on stdout (the same
// fields as `tickmesh-subscribe --json`). Usage:
//   node subscriber.js [--publish tcp://127.0.0.1:5591] [--replay tcp://127.0.0.1:5592] [--since SEQ] [--count N]
"use strict";
const zmq = require("zeromq");
const { Decoder, encode } = require("@msgpack/msgpack");

// Nanosecond times (`time`, `*_ns`, `epoch`) are above 2^53: decode 64-bit integers as BigInt.
// Small integers (`seq`, counts) still decode as Numbers.
const decoder = new Decoder({ useBigInt64: true });

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback;
}
const PUBLISH = option("publish", "tcp://127.0.0.1:5591");
const REPLAY = option("replay", "tcp://127.0.0.1:5592");
const SINCE = option("since", null); // start by asking the ring for everything after this sequence
const COUNT = Number(option("count", "0")); // stop after this many events (0: run until stopped)

// JSON.stringify cannot write a BigInt: write its digits as a JSON number.
function toJson(value) {
  const text = JSON.stringify(value, (k, v) => (typeof v === "bigint" ? `#big#${v}` : v));
  return text.replace(/"#big#(-?\d+)"/g, "$1");
}

// oldRun: {epoch, lastSeq} of a restarted publisher's old run, until a ring reply says where that run ended
const state = { epoch: null, lastSeq: 0, printed: 0, gaps: 0, lost: 0, oldRun: null };

function print(publication) {
  // The flat shape of `tickmesh-subscribe --json`: the event's fields, then seq, epoch, published_ns.
  const { seq, epoch, published_ns: publishedNs, event } = publication;
  console.log(toJson({ ...event, seq, epoch, published_ns: publishedNs }));
  state.lastSeq = seq;
  state.printed += 1;
  if (COUNT && state.printed >= COUNT) process.exit(0);
}

// The replay ring is a ROUTER: a DEALER sends [empty delimiter, request] and receives [empty, reply].
async function replay(request) {
  const dealer = new zmq.Dealer({ receiveTimeout: 2000, linger: 0 });
  dealer.connect(REPLAY);
  try {
    await dealer.send(["", encode({ type: "replay", ...request })]);
    const [, payload] = await dealer.receive();
    const reply = decoder.decode(payload);
    if (reply.type === "error") throw new Error(`replay refused: ${reply.error}`);
    return reply; // {type: "replayed", epoch, complete, publications, more, previous_epoch, previous_seq, ended}
  } finally {
    dealer.close();
  }
}

// The ring says where each epoch before it ended (`ended`, newest first; an aggregator from before
// `ended` says only `previous_epoch`): what we had not received of ours is lost. Epochs are start
// times, so one later than ours ran and ended while we were away: all of it is lost.
function oldRunEnd(reply) {
  const { epoch, lastSeq } = state.oldRun;
  const previous = reply.previous_epoch ? [[reply.previous_epoch, reply.previous_seq]] : [];
  const ends = reply.ended && reply.ended.length ? reply.ended : previous;
  let recorded = false;
  for (const [endedEpoch, endedSeq] of ends) {
    if (endedEpoch === epoch) {
      recorded = true;
      if (endedSeq > lastSeq) countLost(endedSeq - lastSeq);
      break;
    }
    if (endedEpoch < epoch) break; // older than ours: where ours ended is not recorded
    if (endedSeq > 0) {
      countLost(endedSeq);
      console.error(`subscriber.js: epoch ${endedEpoch} ran and ended while we were away: its ${endedSeq} events ` +
        "were not received");
    }
  }
  if (!recorded) {
    console.error(`subscriber.js: where epoch ${epoch} ended is not recorded: events after seq ${lastSeq} ` +
      "of it, if any, are not counted as lost");
  }
}

function countLost(n) {
  state.gaps += 1;
  state.lost += n;
}

// Ask the ring for what follows lastSeq (up to upTo, if given); count what it no longer holds as lost.
async function fill(upTo) {
  let reply;
  try {
    reply = await replay({ since: state.lastSeq });
  } catch (err) {
    console.error(`subscriber.js: ${err.message}`);
    reply = { epoch: state.epoch, publications: [] };
  }
  if (reply.epoch !== state.epoch) return; // the aggregator restarted meanwhile: the live stream says so
  if (state.oldRun !== null) {
    oldRunEnd(reply);
    state.oldRun = null;
  }
  for (const publication of reply.publications) {
    if (upTo !== undefined && publication.seq > upTo) break;
    if (publication.seq <= state.lastSeq) continue;
    state.lost += publication.seq - state.lastSeq - 1;
    print(publication);
  }
  if (upTo !== undefined && state.lastSeq < upTo) {
    state.lost += upTo - state.lastSeq;
    state.lastSeq = upTo;
  }
}

async function receive(message) {
  // An event says the last one before it was seq - 1; a heartbeat says the last one was seq.
  const before = message.type === "event" ? message.seq - 1 : message.seq;
  if (message.epoch !== state.epoch) {
    const restarted = state.epoch !== null;
    if (restarted) {
      console.error(`subscriber.js: publisher restarted (epoch ${message.epoch})`);
      state.oldRun = { epoch: state.epoch, lastSeq: state.lastSeq };
    }
    state.epoch = message.epoch; // epoch: the aggregator's start time, ns since the Unix epoch (a BigInt)
    state.lastSeq = restarted ? 0 : before; // a restarted publisher's new run is read from its first event
    if (restarted && before === 0) await fill(0); // nothing to fill: only where the old run ended
  }
  if (before > state.lastSeq) {
    state.gaps += 1;
    await fill(before);
  }
  if (message.type === "event" && message.seq === state.lastSeq + 1) print(message);
}

async function main() {
  const sub = new zmq.Subscriber({ linger: 0 });
  sub.connect(PUBLISH);
  sub.subscribe(); // everything: with a topic filter, sequence numbers skip and heartbeats (`_heartbeat/`) stop
  if (SINCE !== null) {
    const reply = await replay({ since: Number(SINCE) });
    state.epoch = reply.epoch;
    state.lastSeq = Number(SINCE);
    for (const publication of reply.publications) print(publication);
  }
  // Frame 1 is the topic, plain UTF-8 `kind/TICKER/` (not msgpack); frame 2 the msgpack payload.
  for await (const [, payload] of sub) await receive(decoder.decode(payload));
}

process.on("SIGTERM", () => {
  if (state.gaps) console.error(`subscriber.js: ${state.gaps} gaps, ${state.lost} lost`);
  process.exit(0);
});
main().catch((err) => {
  console.error(`subscriber.js: ${err.stack || err}`);
  process.exit(1);
});
