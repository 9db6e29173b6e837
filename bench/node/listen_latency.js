// bench/node/listen_latency.js N: the baseline of the wake-up latency figure.
//
// A plain INSERT and NOTIFY in one autocommit statement, and a client
// LISTENing on another connection: for each of N events, one at a time, the
// milliseconds from clock_timestamp() taken in the inserting statement
// (before its commit, as the engine's figure takes it in the submitting
// statement) to the moment the listener receives the notification.  The
// listener's clock is put on the server's by the round trip of 50
// SELECT clock_timestamp() (the shortest one counts; loopback makes it a
// few tens of microseconds).  Prints one latency a line.
'use strict';
const { performance } = require('perf_hooks');
const { client, die } = require('./common');

const n = Number(process.argv[2]);
const nowMs = () => performance.timeOrigin + performance.now();

(async () => {
	const listener = await client();
	const sender = await client();
	let offset = 0;
	let best = Infinity;
	for (let i = 0; i < 50; i++) {
		const a = nowMs();
		const r = await sender.query('SELECT extract(epoch FROM clock_timestamp())::float8 * 1000 AS ms');
		const b = nowMs();
		if (b - a < best) { best = b - a; offset = r.rows[0].ms - (a + b) / 2; }
	}
	let waiting = null;
	listener.on('notification', (m) => {
		const received = nowMs() + offset;
		if (waiting) waiting(received - Number(m.payload));
	});
	await listener.query('LISTEN bench_wake');
	const out = [];
	for (let i = 1; i <= n; i++) {
		const got = new Promise((resolve, reject) => {
			waiting = resolve;
			setTimeout(() => reject(new Error(`no notification for event ${i} within 5 s`)), 5000).unref();
		});
		await sender.query(`WITH e AS (INSERT INTO notify_events (payload) VALUES (jsonb_build_object('i', $1::int, 'r', random()))
			RETURNING id) SELECT pg_notify('bench_wake', (extract(epoch FROM clock_timestamp())::float8 * 1000)::text) FROM e`, [i]);
		out.push((await got).toFixed(4));
	}
	console.log(out.join('\n'));
	process.exit(0);
})().catch((e) => die(e.stack || String(e)));
