// BullMQ (Node) side of the Corral benchmark: the same scenarios as bench/scenarios.py, printing
// one JSON object per line on stdout. Modules are resolved through NODE_PATH (set by the
// harness). Only loopback servers are accepted.
//
//   node bullmq.js add      --url URL --queue Q --jobs N
//   node bullmq.js bulk     --url URL --queue Q --jobs N --chunk C
//   node bullmq.js seed     --url URL --queue Q --jobs N [--remove-on-complete]
//   node bullmq.js work     --url URL --queue Q --concurrency C   (stdin: "go", then "stop")
//   node bullmq.js produce  --url URL --queue Q --rate R          (stdin: "go", then "stop")
//   node bullmq.js latency  --url URL --queue Q --rate R --seconds S
//   node bullmq.js ceiling  --url URL --tasks T --pipeline P --seconds S
'use strict';

const { Queue, Worker } = require('bullmq');
const IORedis = require('ioredis');
const readline = require('node:readline');

function parseArgs(argv) {
  const args = { mode: argv[0] };
  for (let i = 1; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '').replace(/-/g, '_');
    if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) {
      args[key] = argv[++i];
    } else {
      args[key] = true;
    }
  }
  return args;
}

function connection(url) {
  const parsed = new URL(url);
  if (parsed.hostname !== '127.0.0.1') {
    throw new Error(`refusing non-loopback server ${parsed.hostname}`);
  }
  return {
    host: '127.0.0.1',
    port: Number(parsed.port),
    db: Number(parsed.pathname.slice(1) || 0),
    maxRetriesPerRequest: null,
  };
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function cpuSeconds() {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

function now() {
  return Number(process.hrtime.bigint()) / 1e9;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function addOneByOne(args) {
  const queue = new Queue(args.queue, { connection: connection(args.url) });
  await queue.waitUntilReady();
  const jobs = Number(args.jobs);
  const start = now();
  for (let i = 0; i < jobs; i++) {
    await queue.add('noop', {});
  }
  const seconds = now() - start;
  await queue.close();
  emit({ seconds, jobs });
}

async function addInChunks(queue, jobs, chunk, opts) {
  for (let done = 0; done < jobs; done += chunk) {
    const n = Math.min(chunk, jobs - done);
    const batch = [];
    for (let i = 0; i < n; i++) {
      batch.push({ name: 'noop', data: {}, opts });
    }
    await queue.addBulk(batch);
  }
}

async function addBulk(args) {
  const queue = new Queue(args.queue, { connection: connection(args.url) });
  await queue.waitUntilReady();
  const jobs = Number(args.jobs);
  const start = now();
  await addInChunks(queue, jobs, Number(args.chunk), {});
  const seconds = now() - start;
  await queue.close();
  emit({ seconds, jobs });
}

async function seed(args) {
  const queue = new Queue(args.queue, { connection: connection(args.url) });
  await queue.waitUntilReady();
  const opts = args.remove_on_complete ? { removeOnComplete: true } : {};
  await addInChunks(queue, Number(args.jobs), 1000, opts);
  await queue.close();
  emit({ seeded: Number(args.jobs) });
}

async function work(args) {
  const worker = new Worker(args.queue, async () => undefined, {
    connection: connection(args.url),
    concurrency: Number(args.concurrency),
    autorun: false,
  });
  worker.on('error', (err) => process.stderr.write(`worker error: ${err}\n`));
  await worker.waitUntilReady();
  const lines = readline.createInterface({ input: process.stdin });
  let cpuAtGo = 0;
  let running = null;
  emit({ event: 'ready' });
  for await (const line of lines) {
    const command = line.trim();
    if (command === 'go') {
      cpuAtGo = cpuSeconds();
      running = worker.run();
    } else if (command === 'stop') {
      const cpu = cpuSeconds() - cpuAtGo;
      await worker.close();
      if (running !== null) {
        await running;
      }
      emit({ event: 'stopped', cpu_s: cpu });
      break;
    }
  }
  lines.close();
}

const PRODUCE_TICK_MS = 10;
const PRODUCE_MAX_BATCH = 500;

// Steady load for the dashboard benchmark (the bench.child protocol, like `work`): between "go"
// and "stop", add no-op jobs (removed on completion) at R per second with addBulk, catching up
// in batches of up to PRODUCE_MAX_BATCH when it falls behind; "stopped" reports the jobs added.
async function produce(args) {
  const queue = new Queue(args.queue, { connection: connection(args.url) });
  await queue.waitUntilReady();
  const rate = Number(args.rate);
  const opts = { removeOnComplete: true };
  let stopping = false;
  let added = 0;
  async function loop() {
    const start = now();
    while (!stopping) {
      const due = Math.floor((now() - start) * rate) - added;
      if (due <= 0) {
        await sleep(PRODUCE_TICK_MS);
        continue;
      }
      const n = Math.min(due, PRODUCE_MAX_BATCH);
      const batch = [];
      for (let i = 0; i < n; i++) {
        batch.push({ name: 'noop', data: {}, opts });
      }
      await queue.addBulk(batch);
      added += n;
    }
  }
  const lines = readline.createInterface({ input: process.stdin });
  let cpuAtGo = 0;
  let running = null;
  emit({ event: 'ready' });
  for await (const line of lines) {
    const command = line.trim();
    if (command === 'go' && running === null) {
      cpuAtGo = cpuSeconds();
      running = loop();
    } else if (command === 'stop') {
      const cpu = cpuSeconds() - cpuAtGo;
      stopping = true;
      if (running !== null) {
        await running;
      }
      await queue.close();
      emit({ event: 'stopped', cpu_s: cpu, added });
      break;
    }
  }
  lines.close();
}

function percentile(sorted, q) {
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank];
}

async function latency(args) {
  const conn = connection(args.url);
  const queue = new Queue(args.queue, { connection: conn });
  await queue.waitUntilReady();
  const rate = Number(args.rate);
  const total = Math.round(rate * Number(args.seconds));
  const adds = [];
  const start = now();
  for (let i = 0; i < total; i++) {
    const due = start + i / rate;
    const wait = due - now();
    if (wait > 0) {
      await sleep(wait * 1000);
    }
    // on schedule, without waiting for the previous add: a steady arrival rate
    adds.push(queue.add('noop', {}));
  }
  const achieved = total / (now() - start);
  const ids = (await Promise.all(adds)).map((job) => job.id);
  const reader = new IORedis(conn);
  const deadline = now() + 60;
  while (now() < deadline) {
    const [[, wait], [, active]] = await reader
      .multi()
      .llen(`bull:${args.queue}:wait`)
      .llen(`bull:${args.queue}:active`)
      .exec();
    if (wait + active === 0) {
      break;
    }
    await sleep(50);
  }
  const pipe = reader.pipeline();
  for (const id of ids) {
    pipe.hmget(`bull:${args.queue}:${id}`, 'timestamp', 'processedOn');
  }
  const replies = await pipe.exec();
  const delays = [];
  for (const [err, [timestamp, processedOn]] of replies) {
    if (!err && timestamp !== null && processedOn !== null) {
      delays.push(Number(processedOn) - Number(timestamp));
    }
  }
  delays.sort((a, b) => a - b);
  await reader.quit();
  await queue.close();
  emit({
    jobs: total,
    measured: delays.length,
    achieved_rate: achieved,
    p50_ms: percentile(delays, 0.5),
    p99_ms: percentile(delays, 0.99),
  });
}

async function ceiling(args) {
  const client = new IORedis(connection(args.url));
  const script = "redis.call('INCR', KEYS[1]) return 1";
  const sha = await client.script('LOAD', script);
  const tasks = Number(args.tasks);
  const depth = Number(args.pipeline);
  const seconds = Number(args.seconds);
  let calls = 0;
  const start = now();
  const end = start + seconds;
  async function loop() {
    while (now() < end) {
      if (depth <= 1) {
        await client.evalsha(sha, 1, 'bench:ceiling');
        calls += 1;
      } else {
        const pipe = client.pipeline();
        for (let i = 0; i < depth; i++) {
          pipe.evalsha(sha, 1, 'bench:ceiling');
        }
        await pipe.exec();
        calls += depth;
      }
    }
  }
  await Promise.all(Array.from({ length: tasks }, loop));
  const elapsed = now() - start;
  await client.quit();
  emit({ calls, seconds: elapsed });
}

const MODES = { add: addOneByOne, bulk: addBulk, seed, work, produce, latency, ceiling };

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const mode = MODES[args.mode];
  if (mode === undefined) {
    throw new Error(`unknown mode ${args.mode}; expected one of ${Object.keys(MODES)}`);
  }
  await mode(args);
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
