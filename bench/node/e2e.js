// bench/node/e2e.js: end-to-end rate of jobs that SQL submits and something
// in the server runs (the engine's workers, or a procedure).
//
// Environment: E2E_N jobs; E2E_SUBMIT, one statement that submits them (in
// its own transaction); E2E_RUN, optionally, a statement to run after the
// submit's commit (e.g. CALL base_run()); E2E_DONE, a boolean expression
// that is true once every job is finished; E2E_CHECK, optionally, one that
// must then be true (e.g. that all N completed).  Prints jobs/s: N over the
// time from the submit's commit to the first poll that sees E2E_DONE.
'use strict';
const { client, die, serverNow, pollDone } = require('./common');

(async () => {
	const n = Number(process.env.E2E_N);
	const c = await client();
	await c.query(process.env.E2E_SUBMIT);
	const t0 = await serverNow(c); // the submit has committed
	if (process.env.E2E_RUN) await c.query(process.env.E2E_RUN);
	const t1 = await pollDone(c, process.env.E2E_DONE);
	if (process.env.E2E_CHECK) {
		const ok = (await c.query(`SELECT (${process.env.E2E_CHECK}) AS ok`)).rows[0].ok;
		if (!ok) die(`check failed: ${process.env.E2E_CHECK}`);
	}
	console.log((n / (t1 - t0)).toFixed(1));
	await c.end();
	process.exit(0);
})();
