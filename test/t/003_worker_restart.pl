
# Copyright (c) orchestrator authors
#
# More crash and restart cases:
#   1. a worker killed while idle comes back after the crash restart, and a
#      job submitted afterwards wakes it and runs (the wake registry in
#      shared memory is rebuilt)
#   2. a job waiting for a retry (run_at in the future) survives a crash:
#      the restarted worker sleeps until run_at and runs it then, not early
#   3. a worker killed straight after its claim: the claim commits
#      asynchronously, so the crash may or may not have lost it; either way
#      the job runs exactly once and every claim is accounted for
#   4. SIGTERM with a batch claimed: the running step is cancelled and the
#      jobs not yet started are handed back with it
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/..";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OrchTest;

my ($org, $user) = ($ORG, $USER);

# autovacuum off and a slow WAL writer: nothing else flushes WAL behind the
# test's back, so in case 3 the asynchronous claim is usually still
# unflushed when the worker dies (the test passes either way)
my $node = start_node(
	'restart',
	workers => 1,
	lease_duration => '2s',
	conf => q{restart_after_crash = on
autovacuum = off
wal_writer_delay = '10s'
});
install_extension($node);

$node->safe_psql(
	'postgres', qq{
CREATE TABLE public.side_effects (n text, step text, written_by integer);
CREATE FUNCTION public.quick_step(s jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
	INSERT INTO public.side_effects VALUES (s->'event'->'payload'->>'n', 'quick', pg_backend_pid());
	RETURN '{}';
END \$\$;
SELECT orch_define_sequence('quick', '[{"name": "quick", "kind": "sql", "function": "quick_step"}]');

-- fails on the first call ever (a sequence is not rolled back), then succeeds
CREATE SEQUENCE public.flaky_calls;
CREATE FUNCTION public.flaky_step(s jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
	IF nextval('public.flaky_calls') = 1 THEN
		RAISE EXCEPTION 'first attempt fails';
	END IF;
	INSERT INTO public.side_effects VALUES (s->'event'->'payload'->>'n', 'flaky', pg_backend_pid());
	RETURN '{}';
END \$\$;
SELECT orch_define_sequence('flaky', '[{"name": "flaky", "kind": "sql", "function": "flaky_step",
	"on_failure": "retry", "retry": {"attempts": 3, "backoff_ms": 4000}}]');

-- writes, then waits while the test holds advisory lock 4242
CREATE FUNCTION public.blocking_step(s jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
	INSERT INTO public.side_effects VALUES (s->'event'->'payload'->>'n', 'one', pg_backend_pid());
	PERFORM pg_advisory_xact_lock(4242);
	RETURN '{}';
END \$\$;
CREATE FUNCTION public.second_step(s jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
	INSERT INTO public.side_effects VALUES (s->'event'->'payload'->>'n', 'two', pg_backend_pid());
	RETURN '{}';
END \$\$;
SELECT orch_define_sequence('blocking', '[
	{"name": "one", "kind": "sql", "function": "blocking_step"},
	{"name": "two", "kind": "sql", "function": "second_step"}]');
});

sub submit
{
	my ($type, $n) = @_;
	my $job = submit_job($node, $type, qq{{"n": "$n"}});
	die "submit of $type/$n returned no job" unless $job =~ /^[0-9a-f-]{36}$/;
	return $job;
}

# kill -9 the worker and wait until the crash restart is through and a new
# worker runs; returns the new worker's pid
sub crash_worker
{
	my ($pid) = @_;
	my $offset = -s $node->logfile;
	kill('KILL', $pid) or die "could not kill $pid";
	wait_for_crash_restart($node, $pid, $offset);
	wait_for_new_worker($node, $pid) or die "no worker after the crash restart";
	return worker_pid($node);
}

# ---------------------------------------------------------------------------
# 1. idle worker killed; a job submitted after the crash restart runs
# ---------------------------------------------------------------------------
ok(wait_idle_worker($node), 'worker is idle');
my $pid1 = worker_pid($node);
my $pid2 = crash_worker($pid1);
isnt($pid2, $pid1, 'crash restart brought up a new worker');
ok(wait_idle_worker($node), 'the new worker is idle, sleeping until woken');

my $job1 = submit('quick', 'after-idle-crash');
ok(wait_job_status($node, $job1, 'completed'),
	'a job submitted after the crash wakes the new worker and completes');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*), min(written_by) = $pid2 FROM public.side_effects WHERE n = 'after-idle-crash'"),
	'1|t',
	'it ran once, in the new worker');

# ---------------------------------------------------------------------------
# 2. a job waiting for its retry survives a crash and runs at run_at
# ---------------------------------------------------------------------------
my $job2 = submit('flaky', 'retry');
ok( $node->poll_query_until(
		'postgres', qq{
SELECT j.status = 'pending' AND j.run_at > now()
   AND EXISTS (SELECT 1 FROM orchestrator.step_history h
               WHERE h.job_id = j.id AND h.outcome = 'retry_scheduled')
FROM orchestrator.sequence_jobs j WHERE j.id = '$job2'}),
	'first attempt failed and a retry is scheduled in the future');
ok(wait_idle_worker($node), 'worker sleeps until the retry is due');

my $pid3 = crash_worker($pid2);
is( $node->safe_psql(
		'postgres', qq{
SELECT a.backend_start < j.run_at AND j.status = 'pending'
FROM pg_stat_activity a, orchestrator.sequence_jobs j
WHERE a.pid = $pid3 AND j.id = '$job2'}),
	't',
	'the new worker started before the retry was due, with the job still pending');

# nothing wakes the worker now: it has to wake up by itself at run_at
ok(wait_job_status($node, $job2, 'completed'), 'the retry ran after the crash');
is( $node->safe_psql(
		'postgres', qq{
SELECT string_agg(h.outcome || ':' || h.attempt, ',' ORDER BY h.id),
       bool_and(h.outcome <> 'succeeded' OR (h.started_at >= j.run_at AND h.worker_pid = $pid3))
FROM orchestrator.step_history h JOIN orchestrator.sequence_jobs j ON j.id = h.job_id
WHERE h.job_id = '$job2'}),
	'retry_scheduled:1,succeeded:2|t',
	'attempt 2 succeeded, not before run_at, in the restarted worker');
is( $node->safe_psql(
		'postgres', qq{
SELECT j.run_at >= h.finished_at + interval '4 s'
FROM orchestrator.sequence_jobs j JOIN orchestrator.step_history h ON h.job_id = j.id
WHERE j.id = '$job2' AND h.outcome = 'retry_scheduled'}),
	't',
	'run_at kept the 4 s backoff across the crash');
is($node->safe_psql('postgres', "SELECT count(*) FROM public.side_effects WHERE n = 'retry'"),
	'1', 'the retried step\'s write happened once');

# ---------------------------------------------------------------------------
# 3. worker killed straight after its claim: exactly once, whichever way
#    the crash treated the asynchronous claim
# ---------------------------------------------------------------------------
my $holder = $node->background_psql('postgres', on_error_stop => 0);
$holder->query_safe('SELECT pg_advisory_lock(4242)');

my $job3 = submit('blocking', 'claim');
ok(wait_step_blocked($node, $job3), 'job claimed, worker blocked in step one');

my $pid4 = crash_worker($pid3);
$holder->quit;

ok(wait_job_status($node, $job3, 'completed'), 'job completes after the crash');
my ($token, $expired) = split /\|/,
  $node->safe_psql(
	'postgres', qq{
SELECT j.fencing_token,
       (SELECT count(*) FROM orchestrator.step_history h
        WHERE h.job_id = j.id AND h.outcome = 'lease_expired')
FROM orchestrator.sequence_jobs j WHERE j.id = '$job3'});
note($token == 1
	? 'the claim was lost in the crash: the job ran again from pending'
	: 'the claim survived the crash: the job was reclaimed after its lease expired');
ok(($token == 1 && $expired == 0) || ($token == 2 && $expired == 1),
	"every claim is accounted for (fencing token $token, $expired lease expiry)");
is( $node->safe_psql(
		'postgres', qq{
SELECT string_agg(step || ':' || (written_by = $pid4), ',' ORDER BY step)
FROM public.side_effects WHERE n = 'claim'}),
	'one:true,two:true',
	'each step wrote once, in the new worker; the killed attempt left nothing');
is( $node->safe_psql(
		'postgres', qq{
SELECT string_agg(step_name || ':' || attempt, ',' ORDER BY id)
FROM orchestrator.step_history WHERE job_id = '$job3' AND kind = 'sql'}),
	'one:1,two:1',
	'one succeeded attempt per step in the history');

# ---------------------------------------------------------------------------
# 4. SIGTERM with a batch of three claimed: all three handed back
# ---------------------------------------------------------------------------
ok(wait_idle_worker($node), 'worker idle before the batch');
$holder = $node->background_psql('postgres');
$holder->query_safe('SELECT pg_advisory_lock(4242)');

# one transaction, so the worker claims the three in one batch
my @batch = split /\n/,
  $node->safe_psql(
	'postgres', qq{
SELECT e.job_id FROM generate_series(1, 3) g,
	orch_submit_event('blocking', 'test', '$org', '$user', jsonb_build_object('n', 'batch' || g)) e
ORDER BY g});
is(scalar(@batch), 3, 'three jobs submitted together');
my $batch_in = join(',', map { "'$_'" } @batch);

ok( $node->poll_query_until(
		'postgres', qq{
SELECT (SELECT count(*) FROM orchestrator.sequence_jobs
        WHERE id IN ($batch_in) AND status = 'in_progress' AND lease_owner = $pid4) = 3
   AND EXISTS (SELECT 1 FROM pg_stat_activity
               WHERE pid = $pid4 AND wait_event_type = 'Lock' AND wait_event = 'advisory')}),
	'all three leased to the worker, the first blocked in step one');

my $offset = -s $node->logfile;
kill('TERM', $pid4) or die "could not signal $pid4";

$node->wait_for_log(qr/orchestrator worker 1 returned 3 job\(s\) to pending/,
	$offset);
pass('the worker handed back the running job and the two it had not started');
$holder->query_safe('SELECT pg_advisory_unlock(4242)');
$holder->quit;

ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) FROM orchestrator.sequence_jobs WHERE id IN ($batch_in) AND status = 'completed'",
		'3'),
	'all three complete after the worker restarts');
my $pid5 = worker_pid($node);
is( $node->safe_psql(
		'postgres', qq{
SELECT string_agg(x, ',' ORDER BY x) FROM (
	SELECT w || ':' || count(*) AS x FROM (
		SELECT step || ':' || CASE written_by WHEN $pid4 THEN 'old' WHEN $pid5 THEN 'new' ELSE '?' END AS w
		FROM public.side_effects WHERE n LIKE 'batch%') e
	GROUP BY w) s}),
	'one:new:3,two:new:3',
	'every step ran once per job, all in the new worker: the cancelled step left nothing');
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FILTER (WHERE outcome = 'succeeded'), count(*) FILTER (WHERE outcome <> 'succeeded'),
       count(DISTINCT (job_id, step_index))
FROM orchestrator.step_history WHERE job_id IN ($batch_in)}),
	'6|0|6',
	'six succeeded step rows, one per job and step, and no lease expiry');
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(DISTINCT fencing_token::text, ',') FROM orchestrator.sequence_jobs WHERE id IN ($batch_in)"),
	'2',
	'each job was claimed exactly twice');

$node->stop;

done_testing();
