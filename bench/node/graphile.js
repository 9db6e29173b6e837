// bench/node/graphile.js MODE [N]: graphile-worker baseline for bench/run.sh.
//
//   migrate   installs graphile-worker's schema (graphile_worker)
//   batched N runs N jobs with the settings graphile-worker's performance
//             page gives for its highest rate: local queue of 500, batched
//             completions (completeJobBatchDelay, failJobBatchDelay = 0),
//             useNodeTime; BENCH_GW_CONCURRENCY jobs at once (default 24,
//             the page's figure), a pool of that + 1 connections
//   defaults N runs N jobs with graphile-worker's defaults (concurrency 1,
//             pool of 10, pollInterval 2000, no local queue or batching)
//
// Each job is one task that makes the three writes of the engine's three
// sql steps in one transaction (common.js threeWrites).  The N jobs and
// their N app_state rows are added in one transaction with
// graphile_worker.add_jobs, with the worker running and listening; prints
// jobs/s from that commit until graphile-worker has no job left.
'use strict';
const { EventEmitter } = require('events');
const { run, runMigrations, Logger } = require('graphile-worker');
const { Pool, client, die, serverNow, pollDone, threeWrites } = require('./common');

const mode = process.argv[2];
const n = Number(process.argv[3] || 0);
const logger = new Logger(() => (level, message) => { if (level === 'error') console.error(message); });

function settings() {
	if (mode === 'batched') {
		const concurrency = Number(process.env.BENCH_GW_CONCURRENCY || 24);
		return {
			pool: concurrency + 1,
			options: {
				concurrency,
				pollInterval: 1000,
				useNodeTime: true,
				preset: { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } },
			},
		};
	}
	if (mode === 'defaults') return { pool: 10, options: {} };
	die(`unknown mode ${mode}`);
}

(async () => {
	if (mode === 'migrate') {
		const pgPool = new Pool({ max: 2 });
		pgPool.on('error', (e) => die(e.stack || String(e)));
		pgPool.on('connect', (c) => c.on('error', (e) => die(e.stack || String(e))));
		await runMigrations({ pgPool, logger });
		await pgPool.end();
		process.exit(0);
	}
	const { pool, options } = settings();
	const pgPool = new Pool({ max: pool });
	pgPool.on('error', (e) => die(e.stack || String(e)));
	pgPool.on('connect', (c) => c.on('error', (e) => die(e.stack || String(e))));
	const events = new EventEmitter();
	const listening = new Promise((resolve) => events.once('pool:listen:success', resolve));
	const runner = await run({
		...options,
		pgPool,
		events,
		logger,
		noHandleSignals: true,
		taskList: { three: (payload, helpers) => helpers.withPgClient((c) => threeWrites(c, payload.id)) },
	});
	await listening; // bounded by the driver's timeout (common.js)
	const c = await client();
	await c.query('BEGIN');
	await c.query('INSERT INTO app_state (id) SELECT generate_series(1, $1::int)', [n]);
	await c.query(`SELECT count(*) FROM graphile_worker.add_jobs((SELECT array_agg(('three', json_build_object('id', i),
		NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec) FROM generate_series(1, $1::int) i))`, [n]);
	await c.query('COMMIT');
	const t0 = await serverNow(c);
	const t1 = await pollDone(c, 'NOT EXISTS (SELECT 1 FROM graphile_worker._private_jobs)');
	const done = (await c.query('SELECT count(*)::int AS k FROM app_history')).rows[0].k;
	if (done !== 3 * n) die(`${done} history rows, expected ${3 * n}`);
	console.log((n / (t1 - t0)).toFixed(1));
	await runner.stop();
	await c.end();
	process.exit(0);
})();
