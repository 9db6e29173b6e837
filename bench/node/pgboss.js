// bench/node/pgboss.js N | migrate: pg-boss baseline for bench/run.sh.
//
// "migrate" creates pg-boss's schema (pgboss) and the queue, and stops.  N
// starts pg-boss in its schema (pgboss; the first start creates it) with
// BENCH_BOSS_WORKERS workers on queue "three" (default 2), each fetching
// batches of BENCH_BOSS_BATCH jobs (default 100) and running a batch's jobs
// at once on a pool of BENCH_BOSS_POOL connections (default 8).  pg-boss
// polls (every 0.5 s at the most often it allows), so the driver notifies
// the workers after the insert, and a worker whose batch was full notifies
// itself, so a backlog is fetched without waiting for the next poll.  Each
// job makes the three writes of the engine's three sql steps in one
// transaction (common.js threeWrites).  The N jobs are inserted with one
// boss.insert (their app_state rows just before); prints jobs/s from the
// insert's commit until no job of the queue is left unfinished.
'use strict';
const PgBoss = require('pg-boss');
const { Pool, client, die, serverNow, pollDone, threeWrites } = require('./common');

const n = Number(process.argv[2]);
const workers = Number(process.env.BENCH_BOSS_WORKERS || 2);
const batchSize = Number(process.env.BENCH_BOSS_BATCH || 100);
const app = new Pool({ max: Number(process.env.BENCH_BOSS_POOL || 8) });

(async () => {
	const boss = new PgBoss({
		host: process.env.PGHOST, port: Number(process.env.PGPORT), user: process.env.PGUSER,
		database: process.env.PGDATABASE, schema: 'pgboss', max: workers + 4,
		pollingIntervalSeconds: 0.5, schedule: false,
	});
	boss.on('error', (e) => die(e.stack || String(e)));
	await boss.start();
	if (!(await boss.getQueue('three'))) await boss.createQueue('three');
	if (process.argv[2] === 'migrate') { await boss.stop({ graceful: false, wait: true }); process.exit(0); }
	const c = await client();

	const ids = [];
	for (let w = 0; w < workers; w++) {
		const slot = w;
		ids.push(await boss.work('three', { batchSize, pollingIntervalSeconds: 0.5 }, async (jobs) => {
			await Promise.all(jobs.map(async (job) => {
				const a = await app.connect();
				try { await threeWrites(a, job.data.id); } finally { a.release(); }
			}));
			if (jobs.length === batchSize) boss.notifyWorker(ids[slot]);
		}));
	}
	await c.query('INSERT INTO app_state (id) SELECT generate_series(1, $1::int)', [n]);
	const jobs = Array.from({ length: n }, (_, i) => ({ name: 'three', data: { id: i + 1 } }));
	await boss.insert(jobs);
	const t0 = await serverNow(c);
	for (const id of ids) boss.notifyWorker(id);
	const t1 = await pollDone(c, `NOT EXISTS (SELECT 1 FROM pgboss.job WHERE name = 'three' AND state < 'completed')`);
	const done = (await c.query('SELECT count(*)::int AS k FROM app_history')).rows[0].k;
	if (done !== 3 * n) die(`${done} history rows, expected ${3 * n}`);
	console.log((n / (t1 - t0)).toFixed(1));
	await boss.stop({ graceful: false, wait: true });
	await c.end();
	process.exit(0);
})();
