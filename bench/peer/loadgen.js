// One load-generator worker for the peer: socket.io-client connections driven by the
// benchmark (quickchat-bench) through JSON lines on stdin, one JSON answer per line on
// stdout, in order. Every client has its own connection (forceNew, WebSocket transport).
//
// Commands:
//   {"op":"connect","clients":[{"url","room","name"}],"concurrency":N}  → {"connected":n}
//   {"op":"send","senders":[i,…],"rate":R,"secs":S,"ack":bool}          → {"sent":n}
//       i indexes this worker's clients; R is this worker's share of the rate
//   {"op":"counts"}  → {"delivered","acked","failed","sent","disconnects"}
//   {"op":"stats"}   → the counts and the latency histograms (reset afterwards)
//   {"op":"close"}   → {"closed":n}
//
// A message body starts with its send time in microseconds on the monotonic clock (the
// same clock on every process of the machine), padded to 100 bytes; a receiver records
// now − send time. Histograms travel as [value, count] pairs with values rounded to three
// significant digits (HdrHistogram's precision); the benchmark merges them.
"use strict";

const readline = require("node:readline");
const { randomUUID } = require("node:crypto");
const { io } = require("socket.io-client");

const BODY_LEN = 100;
const now = () => Number(process.hrtime.bigint() / 1000n);

class Hist {
  constructor() {
    this.counts = new Map();
  }
  record(v) {
    let value = Math.max(1, v);
    if (value >= 1000) {
      const unit = 10 ** (Math.floor(Math.log10(value)) - 2);
      value = Math.round(value / unit) * unit;
    }
    this.counts.set(value, (this.counts.get(value) || 0) + 1);
  }
  take() {
    const pairs = [...this.counts];
    this.counts = new Map();
    return pairs;
  }
}

let clients = [];
let closing = false;
const counts = { delivered: 0, acked: 0, failed: 0, sent: 0, disconnects: 0 };
const latency = new Hist();
const ackLatency = new Hist();

function body(t) {
  const s = `${t} `;
  return s + "x".repeat(Math.max(0, BODY_LEN - s.length));
}

function open(spec) {
  return new Promise((resolve, reject) => {
    const socket = io(spec.url, {
      transports: ["websocket"],
      forceNew: true,
      reconnection: false,
      timeout: 60_000,
      auth: { room: spec.room },
    });
    socket.on("message", (data) => {
      counts.delivered++;
      latency.record(now() - parseInt(data.message, 10));
    });
    socket.on("disconnect", () => {
      if (!closing) counts.disconnects++;
    });
    socket.once("connect", () => resolve({ socket, ...spec }));
    socket.once("connect_error", (err) => reject(new Error(`connect ${spec.url}: ${err.message}`)));
  });
}

async function connect({ clients: specs, concurrency }) {
  closing = false;
  let next = 0;
  const opened = new Array(specs.length);
  const lane = async () => {
    while (next < specs.length) {
      const i = next++;
      opened[i] = await open(specs[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency || 100) }, lane));
  clients = clients.concat(opened);
  return { connected: opened.length };
}

function emit(client, ack) {
  const t = now();
  const data = {
    id: randomUUID(),
    message: body(t),
    name: client.name,
    created_at: new Date().toISOString(),
    group_id: client.room,
  };
  counts.sent++;
  if (ack) {
    client.socket.emit("message", data, (answer) => {
      if (answer && answer.ok) {
        counts.acked++;
        ackLatency.record(now() - t);
      } else {
        counts.failed++;
      }
    });
  } else {
    client.socket.emit("message", data);
  }
}

function send({ senders, rate, secs, ack }) {
  return new Promise((resolve) => {
    if (!senders.length || rate <= 0) return resolve({ sent: 0 });
    const start = now();
    const end = start + secs * 1e6;
    let sent = 0;
    let turn = 0;
    const tick = () => {
      const t = Math.min(now(), end);
      const due = Math.floor(((t - start) / 1e6) * rate) - sent;
      for (let k = 0; k < due; k++) {
        emit(clients[senders[turn++ % senders.length]], ack);
        sent++;
      }
      if (t >= end) resolve({ sent });
      else setTimeout(tick, 1);
    };
    tick();
  });
}

function close() {
  closing = true;
  for (const c of clients) c.socket.disconnect();
  const closed = clients.length;
  clients = [];
  return { closed };
}

const handlers = {
  connect,
  send,
  counts: () => ({ ...counts }),
  stats: () => {
    const answer = { ...counts, latency: latency.take(), ack_latency: ackLatency.take() };
    for (const k of Object.keys(counts)) counts[k] = 0;
    return answer;
  },
  close,
};

// Commands run one after another, each answered before the next starts.
let queue = Promise.resolve();
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  queue = queue.then(async () => {
    let answer;
    try {
      const command = JSON.parse(line);
      const handler = handlers[command.op];
      if (!handler) throw new Error(`unknown op ${command.op}`);
      answer = await handler(command);
    } catch (err) {
      answer = { error: err.message };
    }
    process.stdout.write(JSON.stringify(answer) + "\n");
  });
}).on("close", () => {
  queue.then(() => {
    close();
    process.exit(0);
  });
});
