// The Node side of Corral's BullMQ tests: the real `bullmq` package (v5 or v6, found through
// NODE_PATH) driven by the Python test over stdin/stdout, one JSON object per line each way.
// Every request has an `op`; every reply is {ok: true, result} or {ok: false, error}.
//
//   node driver.js --url redis://127.0.0.1:PORT/0 [--prefix bull]
//
// Workers started here run a processor chosen by the job's data: {mode: "fail"} throws,
// {mode: "flaky"} throws while a `failing` request has turned failing on (off at start),
// {mode: "hold"} runs until a `release` request, anything else completes with {done: data}.
// A `clock` request sets this process's Date.now() (what BullMQ stamps finishes and metrics
// with) to a given time, running on from there; `clock` with no time turns it back.
// Only loopback servers are accepted.
'use strict';

const readline = require('node:readline');
const { Queue, Worker, FlowProducer } = require('bullmq');

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 2) {
    args[argv[i].replace(/^--/, '')] = argv[i + 1];
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));
const url = new URL(args.url);
if (url.hostname !== '127.0.0.1') {
  throw new Error(`refusing non-loopback server ${url.hostname}`);
}
const prefix = args.prefix || 'bull';

const realNow = Date.now;
let clockOffset = 0;
Date.now = () => realNow() + clockOffset;

function connection() {
  return {
    host: '127.0.0.1',
    port: Number(url.port),
    db: Number(url.pathname.slice(1) || 0),
    maxRetriesPerRequest: null,
  };
}

const queues = new Map();
const workers = new Map();
const held = [];
let flowProducer = null;
let nextWorker = 1;
let failing = false;

function queue(name) {
  if (!queues.has(name)) {
    queues.set(name, new Queue(name, { connection: connection(), prefix }));
  }
  return queues.get(name);
}

async function processor(job) {
  const mode = (job.data && job.data.mode) || 'ok';
  if (mode === 'fail' || (mode === 'flaky' && failing)) {
    throw new Error(`failed on purpose: ${job.id}`);
  }
  if (mode === 'hold') {
    await new Promise(resolve => held.push(resolve));
  }
  await job.log(`processed ${job.id}`);
  await job.updateProgress(100);
  return { done: job.data };
}

async function getJob(queueName, id) {
  const job = await queue(queueName).getJob(id);
  if (!job) return null;
  return {
    id: job.id,
    name: job.name,
    data: job.data,
    opts: job.opts,
    progress: job.progress,
    returnvalue: job.returnvalue === undefined ? null : job.returnvalue,
    attemptsMade: job.attemptsMade,
    attemptsStarted: job.attemptsStarted,
    failedReason: job.failedReason === undefined ? null : job.failedReason,
    stacktrace: job.stacktrace,
    timestamp: job.timestamp,
    processedOn: job.processedOn === undefined ? null : job.processedOn,
    finishedOn: job.finishedOn === undefined ? null : job.finishedOn,
    processedBy: job.processedBy === undefined ? null : job.processedBy,
    deduplicationId: job.deduplicationId === undefined ? null : job.deduplicationId,
    parentKey: job.parentKey === undefined ? null : job.parentKey,
    parent: job.parent === undefined ? null : job.parent,
    state: await job.getState(),
  };
}

const ops = {
  async add({ queue: name, name: jobName, data, opts }) {
    const job = await queue(name).add(jobName || 'job', data || {}, opts || {});
    return job.id;
  },
  async flow({ queue: name, childQueue, children, opts }) {
    flowProducer = flowProducer || new FlowProducer({ connection: connection(), prefix });
    const tree = await flowProducer.add({
      name: 'parent',
      queueName: name,
      data: { role: 'parent' },
      opts: opts || {},
      children: Array.from({ length: children }, (_, i) => ({
        name: 'child',
        queueName: childQueue,
        data: { role: 'child', i },
        opts: i === 0 ? { failParentOnFailure: true } : {},
      })),
    });
    return { parent: tree.job.id, children: tree.children.map(c => c.job.id) };
  },
  async tree({ tree }) {
    // a FlowProducer flow as given ({name, queueName, data, opts, children}); ids alike
    flowProducer = flowProducer || new FlowProducer({ connection: connection(), prefix });
    const ids = node => ({ id: node.job.id, children: (node.children || []).map(ids) });
    return ids(await flowProducer.add(tree));
  },
  async dependencies({ queue: name, id }) {
    const job = await queue(name).getJob(id);
    if (!job) return null;
    return {
      ...(await job.getDependencies()),
      values: await job.getChildrenValues(),
      ignoredFailures: await job.getIgnoredChildrenFailures(),
      counts: await job.getDependenciesCount(),
      parentKey: job.parentKey === undefined ? null : job.parentKey,
      parent: job.parent === undefined ? null : job.parent,
    };
  },
  async upsertScheduler({ queue: name, id, repeat, template }) {
    const job = await queue(name).upsertJobScheduler(id, repeat, template);
    return job ? job.id : null;
  },
  async schedulers({ queue: name }) {
    return queue(name).getJobSchedulers(0, -1, true);
  },
  async repeatables({ queue: name }) {
    return queue(name).getRepeatableJobs(0, -1, true); // BullMQ 5 only
  },
  async getWorkers({ queue: name }) {
    return queue(name).getWorkers();
  },
  async clock({ at }) {
    clockOffset = at === undefined || at === null ? 0 : at - realNow();
    return Date.now();
  },
  async counts({ queue: name }) {
    return queue(name).getJobCounts();
  },
  async jobs({ queue: name, state, start, end, asc }) {
    const jobs = await queue(name).getJobs([state], start, end, asc);
    return jobs.filter(Boolean).map(job => job.id);
  },
  async job({ queue: name, id }) {
    return getJob(name, id);
  },
  async state({ queue: name, id }) {
    return queue(name).getJobState(id);
  },
  async pause({ queue: name }) {
    await queue(name).pause();
    return true;
  },
  async resume({ queue: name }) {
    await queue(name).resume();
    return true;
  },
  async isPaused({ queue: name }) {
    return queue(name).isPaused();
  },
  async workers({ queue: name }) {
    return queue(name).getWorkersCount();
  },
  async metrics({ queue: name, kind }) {
    const metrics = await queue(name).getMetrics(kind);
    return { count: metrics.meta.count, data: metrics.data, meta: metrics.meta };
  },
  async logs({ queue: name, id }) {
    return queue(name).getJobLogs(id);
  },
  async worker({ queue: name, concurrency, workerName, lockDuration, stalledInterval, metrics }) {
    const opts = { connection: connection(), prefix, concurrency: concurrency || 1 };
    if (workerName) opts.name = workerName;
    if (lockDuration) opts.lockDuration = lockDuration;
    if (stalledInterval) opts.stalledInterval = stalledInterval;
    if (metrics) opts.metrics = { maxDataPoints: metrics };
    const worker = new Worker(name, processor, opts);
    worker.on('error', () => {});
    await worker.waitUntilReady();
    const handle = nextWorker++;
    workers.set(handle, worker);
    return handle;
  },
  async closeWorker({ handle }) {
    const worker = workers.get(handle);
    workers.delete(handle);
    if (worker) await worker.close(true);
    return true;
  },
  async failing({ on }) {
    failing = Boolean(on);
    return failing;
  },
  async release() {
    const count = held.length;
    held.splice(0).forEach(resolve => resolve());
    return count;
  },
  async close() {
    held.splice(0).forEach(resolve => resolve());
    await Promise.all([...workers.values()].map(w => w.close(true)));
    await Promise.all([...queues.values()].map(q => q.close()));
    if (flowProducer) await flowProducer.close();
    return true;
  },
};

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', async line => {
  let request;
  try {
    request = JSON.parse(line);
    const result = await ops[request.op](request);
    process.stdout.write(JSON.stringify({ ok: true, result: result === undefined ? null : result }) + '\n');
    if (request.op === 'close') process.exit(0);
  } catch (err) {
    process.stdout.write(JSON.stringify({ ok: false, error: String((err && err.stack) || err) }) + '\n');
  }
});
lines.on('close', () => process.exit(0));
