
# Copyright (c) orchestrator authors
#
# A worker killed with SIGKILL in the middle of a step: the postmaster
# crash-restarts the cluster, the restarted worker reclaims the job at once
# (its lease, 10 minutes long, is held by a process that no longer exists),
# and the job completes with nothing lost and nothing done twice (the
# killed attempt's writes are rolled back by the crash).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/..";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OrchTest;

my $node = start_node(
	'crash',
	workers => 1,
	lease_duration => '10min',
	conf => "restart_after_crash = on\n");
install_extension($node);

$node->safe_psql(
	'postgres', q{
CREATE TABLE public.side_effects (n text, written_by integer);
CREATE TABLE public.finished (n text);
-- writes first, then blocks while the test holds advisory lock 4242, so a
-- worker killed while waiting leaves an uncommitted write behind
CREATE FUNCTION public.slow_step(s jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.side_effects VALUES (s->'event'->'payload'->>'n', pg_backend_pid());
	PERFORM pg_advisory_xact_lock(4242);
	RETURN jsonb_build_object('ok', true);
END $$;
CREATE FUNCTION public.finish_step(s jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.finished VALUES (s->'event'->'payload'->>'n');
	RETURN jsonb_build_object('done', true);
END $$;
SELECT orch_define_sequence('crash_test', '[
	{"name": "slow", "kind": "sql", "function": "slow_step"},
	{"name": "finish", "kind": "sql", "function": "finish_step"}]');
});

ok(wait_for_workers($node, 1), 'one orchestrator worker is running');

# The test holds the lock the step waits for.
my $holder = $node->background_psql('postgres', on_error_stop => 0);
$holder->query_safe('SELECT pg_advisory_lock(4242)');

my $job = submit_job($node, 'crash_test', '{"n": "one"}');
like($job, qr/^[0-9a-f-]{36}$/, 'event accepted with a job id');

ok(wait_step_blocked($node, $job),
	'job is in progress and the worker waits on the advisory lock');

my $worker_pid = worker_pid($node);
like($worker_pid, qr/^\d+$/, 'found the worker pid');
is( $node->safe_psql(
		'postgres',
		"SELECT lease_owner = $worker_pid AND lease_expires_at IS NOT NULL AND fencing_token = 1
		 FROM orchestrator.sequence_jobs WHERE id = '$job'"),
	't',
	'the job is leased to that worker under fencing token 1');
is($node->safe_psql('postgres', 'SELECT count(*) FROM public.side_effects'),
	'0', 'the blocked attempt\'s write is not committed');

# The claim commits asynchronously (src/worker.c, claim_batch): a crash
# before its WAL is flushed loses the claim and the job simply runs again
# from pending (003_worker_restart.pl covers that).  Here the claim must be
# durable so the restarted worker has a dead worker's lease to reclaim: a
# checkpoint flushes all WAL written so far.
$node->safe_psql('postgres', 'CHECKPOINT');

my $log_offset = -s $node->logfile;

# Kill the worker.  The postmaster treats it as a crash: every backend,
# including the lock holder, is terminated and the cluster reinitialised.
ok(kill('KILL', $worker_pid), 'sent SIGKILL to the worker');

$node->wait_for_log(
	qr/background worker "orchestrator worker" \(PID $worker_pid\) was terminated by signal 9/,
	$log_offset);
pass('server log shows the worker was terminated by signal 9');
$node->wait_for_log(qr/all server processes terminated; reinitializing/,
	$log_offset);
pass('postmaster reinitialised after the crash');

# The lock holder's connection died with the crash.
$holder->quit;

ok(wait_job_status($node, $job, 'completed'), 'job completes after the crash');

# the reclaim is logged before the job is claimed again, so it is there now
like(
	slurp_file($node->logfile, $log_offset),
	qr/orchestrator worker reclaimed 1 job\(s\) leased to processes that no longer exist/,
	'server log shows the dead worker\'s lease was reclaimed, long before it would lapse');

my $new_worker_pid = worker_pid($node);
like($new_worker_pid, qr/^\d+$/, 'a worker runs again after the crash');
isnt($new_worker_pid, $worker_pid, 'it is a new process');

is( $node->safe_psql(
		'postgres', qq{
SELECT count(*), min(error) = 'lease of worker pid $worker_pid ended with its process; job returned to the queue',
       min(worker_pid) = $new_worker_pid
FROM orchestrator.step_history
WHERE job_id = '$job' AND kind = 'engine' AND outcome = 'lease_expired'}),
	'1|t|t',
	'one lease_expired row naming the killed worker, written by the new worker');

is( $node->safe_psql(
		'postgres', qq{
SELECT string_agg(step_index || ':' || step_name || ':' || attempt || ':' || (worker_pid = $new_worker_pid), ',' ORDER BY id)
FROM orchestrator.step_history
WHERE job_id = '$job' AND outcome = 'succeeded'}),
	'0:slow:1:true,1:finish:1:true',
	'exactly one succeeded row per step, both by the new worker');

is( $node->safe_psql(
		'postgres', qq{
SELECT string_agg(kind || ' ' || outcome, ',' ORDER BY id)
FROM orchestrator.step_history WHERE job_id = '$job'}),
	'engine lease_expired,sql succeeded,sql succeeded',
	'step history is the reclaim then the two steps, nothing else');

is( $node->safe_psql(
		'postgres',
		"SELECT count(*), min(n), min(written_by) = $new_worker_pid FROM public.side_effects"),
	'1|one|t',
	'exactly one side effect, written by the new worker (the killed attempt rolled back)');
is($node->safe_psql('postgres', 'SELECT count(*), min(n) FROM public.finished'),
	'1|one', 'step 2 ran exactly once');

is( $node->safe_psql(
		'postgres',
		"SELECT count(*), min(outcome) FROM orchestrator.event_log WHERE job_id = '$job'"),
	'1|accepted',
	'the event_log row survived the crash');

is( $node->safe_psql(
		'postgres', qq{
SELECT context->'execution_metadata'->>'steps_completed',
       context->'execution_metadata'->>'steps_failed',
       context->'steps_completed',
       current_step, fencing_token,
       lease_owner IS NULL AND lease_expires_at IS NULL AND finished_at IS NOT NULL
FROM orchestrator.sequence_jobs WHERE id = '$job'}),
	'2|0|["slow", "finish"]|2|2|t',
	'execution metadata counts two steps; claimed twice; lease cleared');

is( $node->safe_psql(
		'postgres', qq{
SELECT string_agg(entry, ',' ORDER BY ordinality)
FROM orch_job_timeline('$job') WITH ORDINALITY}),
	'event accepted,engine lease_expired,step succeeded,step succeeded,job completed',
	'the timeline shows the reclaim');

$node->stop;

done_testing();
