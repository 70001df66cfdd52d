// A BullMQ worker process whose jobs never finish, for the stalled-job test: it prints
// "active <id>" when it takes a job, and is meant to be SIGKILLed while it holds them.
//
//   node holding_worker.js --url redis://127.0.0.1:PORT/0 --queue Q [--prefix bull]
//                          [--concurrency N] [--lock-duration MS] [--stalled-interval MS]
'use strict';

const { Worker } = require('bullmq');

const args = {};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1];
const url = new URL(args.url);
if (url.hostname !== '127.0.0.1') throw new Error(`refusing non-loopback server ${url.hostname}`);

const worker = new Worker(
  args.queue,
  async job => {
    process.stdout.write(`active ${job.id}\n`);
    await new Promise(() => {}); // never settles: the process is killed while it holds the job
  },
  {
    connection: {
      host: '127.0.0.1',
      port: Number(url.port),
      db: Number(url.pathname.slice(1) || 0),
      maxRetriesPerRequest: null,
    },
    prefix: args.prefix || 'bull',
    concurrency: Number(args.concurrency || 1),
    lockDuration: Number(args['lock-duration'] || 30000),
    // its stall-check guard key lives this long after it dies, delaying other workers' sweeps
    stalledInterval: Number(args['stalled-interval'] || 30000),
    name: 'holder',
  },
);
worker.on('error', () => {});
worker.waitUntilReady().then(() => process.stdout.write('ready\n'));
