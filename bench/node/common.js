// bench/node/common.js: what the Node.js drivers of bench/run.sh share.
//
// They connect with node-postgres's defaults, which run.sh sets through the
// environment (PGHOST = the cluster's socket directory, PGPORT, PGUSER,
// PGDATABASE).  Every wait is bounded: each driver exits with an error after
// BENCH_TIMEOUT seconds (default 600), whatever it is doing.
'use strict';
const { Client, Pool } = require('pg');

const timeoutSec = Number(process.env.BENCH_TIMEOUT || 600);
setTimeout(() => {
	console.error(`${process.argv[1]}: gave up after ${timeoutSec} s`);
	process.exit(3);
}, timeoutSec * 1000).unref();

function die(msg) {
	console.error(`${process.argv[1]}: ${msg}`);
	process.exit(1);
}
process.on('unhandledRejection', (e) => die(e && e.stack ? e.stack : String(e)));

async function client() {
	const c = new Client();
	await c.connect();
	return c;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The server's clock now, in seconds since the epoch.
async function serverNow(c) {
	return (await c.query('SELECT extract(epoch FROM clock_timestamp())::float8 AS t')).rows[0].t;
}

// Polls DONE_SQL (one boolean) every 5 ms, each poll its own autocommit
// statement (so no snapshot is held open to hold back pruning), until it is
// true; returns the server's clock at that poll.  Bounded by the timeout.
async function pollDone(c, doneSql) {
	const q = `SELECT (${doneSql}) AS done, extract(epoch FROM clock_timestamp())::float8 AS t`;
	for (;;) {
		const r = (await c.query(q)).rows[0];
		if (r.done) return r.t;
		await sleep(5);
	}
}

// The same three writes for one job that the engine's three sql steps make
// (each step's output folded into the job's state, and a history row),
// in one transaction: what a graphile-worker or pg-boss task does per job.
const STEPS = ['s1', 's2', 's3'].map((s) => ({
	name: `bench_step_${s}`,
	text: `WITH u AS (UPDATE app_state SET state = state || jsonb_build_object('${s}', ${s}(state))
	       WHERE id = $1 RETURNING state->'${s}' AS o)
	       INSERT INTO app_history (job_id, step, output) SELECT $1, '${s}', o FROM u`,
}));
async function threeWrites(c, id) {
	await c.query('BEGIN');
	for (const s of STEPS) await c.query({ name: s.name, text: s.text, values: [id] });
	await c.query('COMMIT');
}

module.exports = { Client, Pool, client, die, sleep, serverNow, pollDone, threeWrites };
