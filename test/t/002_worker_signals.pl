
# Copyright (c) orchestrator authors
#
# How the worker reacts to signals:
#   idle     with nothing to do it sleeps on its latch, outside any transaction
#   SIGHUP   reloads the configuration; the new batch_size is used at once
#   SIGTERM  cancels the step in hand (its writes roll back, no result is
#            recorded), hands its leases back and exits at once; the
#            postmaster restarts it and the job completes, no step run twice
#   postmaster death  ends the worker
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/..";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use OrchTest;

my ($org, $user) = ($ORG, $USER);

my $node = start_node('signals', workers => 1, lease_duration => '30s');
install_extension($node);

$node->safe_psql(
	'postgres', qq{
CREATE TABLE public.side_effects (n text, step text, written_by integer);
CREATE FUNCTION public.blocking_step(s jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
	PERFORM pg_advisory_xact_lock(4242);
	INSERT INTO public.side_effects VALUES (s->'event'->'payload'->>'n', 'one', pg_backend_pid());
	RETURN jsonb_build_object('ok', true);
END \$\$;
CREATE FUNCTION public.second_step(s jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
	INSERT INTO public.side_effects VALUES (s->'event'->'payload'->>'n', 'two', pg_backend_pid());
	RETURN jsonb_build_object('ok', true);
END \$\$;
SELECT orch_define_sequence('term_test', '[
	{"name": "one", "kind": "sql", "function": "blocking_step"},
	{"name": "two", "kind": "sql", "function": "second_step"}]');
-- records the top-level transaction each job ran in: one per claimed batch
CREATE TABLE public.batch_runs (round text, n int, xid text);
CREATE FUNCTION public.record_tx(s jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
	INSERT INTO public.batch_runs
	VALUES (s->'event'->'payload'->>'round', (s->'event'->'payload'->>'n')::int, pg_current_xact_id()::text);
	RETURN '{}';
END \$\$;
SELECT orch_define_sequence('batch_test', '[{"name": "record", "kind": "sql", "function": "record_tx"}]');
});

# ---------------------------------------------------------------------------
# (c) idle: sleeping on its latch with the Extension wait event, no xact open
# ---------------------------------------------------------------------------
ok(wait_idle_worker($node), 'idle worker reports state idle');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*), min(wait_event_type), min(wait_event),
       bool_and(xact_start IS NULL AND backend_xid IS NULL AND backend_xmin IS NULL)
FROM pg_stat_activity WHERE backend_type = 'orchestrator worker'}),
	'1|Extension|Extension|t',
	'idle worker waits on its latch (Extension) with no transaction or snapshot');

# ---------------------------------------------------------------------------
# (b) SIGHUP: batch_size is reloaded and used for the next claim
# ---------------------------------------------------------------------------
my $batch_split = sub {
	my ($round) = @_;
	return $node->safe_psql(
		'postgres', qq{
SELECT string_agg(c::text, ',' ORDER BY c DESC)
FROM (SELECT count(*) AS c FROM public.batch_runs WHERE round = '$round' GROUP BY xid) b});
};
my $submit_batch = sub {
	my ($round) = @_;
	# one transaction: all ten become visible to the worker at once
	$node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM generate_series(1, 10) g,
	orch_submit_event('batch_test', 'test', '$org', '$user',
	                  jsonb_build_object('round', '$round', 'n', g)) e
WHERE e.outcome = 'accepted'});
	$node->poll_query_until(
		'postgres', qq{
SELECT count(*) FROM orchestrator.sequence_jobs
WHERE event_type = 'batch_test' AND trigger_payload->>'round' = '$round' AND status = 'completed'},
		'10');
};

ok($submit_batch->('r1'), 'ten jobs complete with the default batch_size');
is($batch_split->('r1'), '10', 'default batch_size 32: the ten ran in one batch');

my $log_offset = -s $node->logfile;
$node->safe_psql('postgres',
	"ALTER SYSTEM SET orchestrator.batch_size = 7;\nSELECT pg_reload_conf();");
$node->wait_for_log(
	qr/orchestrator worker 1 reloaded its configuration \(batch_size 7, lease_duration 30000 ms\)/,
	$log_offset);
pass('worker logged the reload with batch_size 7');

ok($submit_batch->('r2'), 'ten jobs complete after the reload');
is($batch_split->('r2'), '7,3', 'batch_size 7: the ten ran as a batch of 7 and one of 3');

# ---------------------------------------------------------------------------
# (a) SIGTERM mid-step: the step is cancelled at once (shutdown never waits
#     for a long step), the lease is handed back, the restarted worker runs
#     the whole job
# ---------------------------------------------------------------------------
my $holder = $node->background_psql('postgres');
$holder->query_safe('SELECT pg_advisory_lock(4242)');

my $job = submit_job($node, 'term_test', '{"n": "t1"}');
like($job, qr/^[0-9a-f-]{36}$/, 'SIGTERM job accepted');

ok(wait_step_blocked($node, $job), 'step one is running and blocked on the advisory lock');

my $old_pid = worker_pid($node);
like($old_pid, qr/^\d+$/, 'found the worker pid');

$log_offset = -s $node->logfile;
ok(kill('TERM', $old_pid), 'sent SIGTERM to the worker');

# The step is still blocked on the lock: SIGTERM must cancel it, not wait.
$node->wait_for_log(qr/orchestrator worker 1 returned 1 job\(s\) to pending/,
	$log_offset);
pass('worker handed its lease back while its step was still blocked');
$node->wait_for_log(qr/orchestrator worker 1 shutting down/, $log_offset);
pass('worker logged its shutdown');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM orchestrator.step_history WHERE job_id = '$job' AND worker_pid = $old_pid"),
	'0',
	'the cancelled step left no result behind');
$holder->query_safe('SELECT pg_advisory_unlock(4242)');

ok(wait_job_status($node, $job, 'completed'), 'job completes after the worker restarts');

my $new_pid = worker_pid($node);
like($new_pid, qr/^\d+$/, 'a worker runs again');
isnt($new_pid, $old_pid, 'the worker was restarted as a new process');

is( $node->safe_psql(
		'postgres', qq{
SELECT string_agg(step_name || ':' || outcome || ':' || attempt || ':' ||
                  CASE worker_pid WHEN $old_pid THEN 'old' WHEN $new_pid THEN 'new' ELSE '?' END,
                  ',' ORDER BY id)
FROM orchestrator.step_history WHERE job_id = '$job'}),
	'one:succeeded:1:new,two:succeeded:1:new',
	'the successor ran both steps, step one as its first attempt; no lease expiry');

is( $node->safe_psql(
		'postgres', qq{
SELECT string_agg(step || ':' || CASE written_by WHEN $old_pid THEN 'old' WHEN $new_pid THEN 'new' ELSE '?' END,
                  ',' ORDER BY step)
FROM public.side_effects WHERE n = 't1'}),
	'one:new,two:new',
	'each step\'s side effect happened exactly once: the cancelled write rolled back');

is( $node->safe_psql(
		'postgres', qq{
SELECT fencing_token, context->'execution_metadata'->>'steps_completed',
       lease_owner IS NULL AND lease_expires_at IS NULL
FROM orchestrator.sequence_jobs WHERE id = '$job'}),
	'2|2|t',
	'claimed twice (before and after the restart), two steps completed');

my $log = slurp_file($node->logfile, $log_offset);
like(
	$log,
	qr/background worker "orchestrator worker" \(PID $old_pid\) exited with exit code 1/,
	'worker exited with code 1 (restartable)');
unlike($log, qr/terminating any other active server processes/,
	'SIGTERM of the worker is not a crash');
is($holder->query_safe('SELECT 1'), '1',
	'an ordinary session survived the worker restart');
$holder->quit;

ok( $node->poll_query_until(
		'postgres',
		"SELECT state || '/' || wait_event FROM pg_stat_activity WHERE backend_type = 'orchestrator worker'",
		'idle/Extension'),
	'the restarted worker goes idle again');

# ---------------------------------------------------------------------------
# (d) postmaster death ends the worker
# ---------------------------------------------------------------------------

# pid => [ppid, state] for every process, from /proc
sub proc_table
{
	my %t;
	opendir(my $dh, '/proc') or die "cannot read /proc: $!";
	for my $pid (grep { /^\d+$/ } readdir $dh)
	{
		open(my $fh, '<', "/proc/$pid/stat") or next;
		my $stat = <$fh>;
		close $fh;
		next unless defined $stat && $stat =~ /^\d+ \(.*\) (\S) (\d+) /s;
		$t{$pid} = [ $2, $1 ];
	}
	closedir $dh;
	return \%t;
}

# a zombie nobody reaps has exited too
sub alive
{
	my ($pid) = @_;
	my $p = proc_table()->{$pid};
	return defined $p && $p->[1] ne 'Z';
}

sub wait_gone
{
	my ($pids, $seconds) = @_;
	for (my $i = 0; $i < $seconds * 10; $i++)
	{
		return 1 unless grep { alive($_) } @$pids;
		usleep(100_000);
	}
	return 0;
}

my $worker_pid = worker_pid($node);
like($worker_pid, qr/^\d+$/, 'found the worker pid before killing the postmaster');
my $pm_pid = $node->{_pid};
my $procs = proc_table();
my @children = grep { $procs->{$_}[0] == $pm_pid } keys %$procs;
ok((grep { $_ == $worker_pid } @children), 'the worker is a child of the postmaster');

# SIGKILL the postmaster (kill9 also forgets its pid, so teardown is quiet)
$node->kill9;
ok(wait_gone([$worker_pid], 30), 'worker exits after postmaster death');

# every other child notices too; anything left after 30 s is killed so the
# node can be started again (a child still attached to the old shared
# memory would stop it)
my $others_gone = wait_gone(\@children, 30);
kill 'KILL', grep { alive($_) } @children unless $others_gone;
ok($others_gone, 'all other postmaster children exited too');

# The new postmaster refuses to start while the old pid still exists, and a
# zombie counts; wait for it to be reaped, and failing that (an init that
# does not reap) remove the lock file of the certainly dead postmaster.
my $reaped = 0;
for (my $i = 0; $i < 300 && !$reaped; $i++)
{
	$reaped = !-e "/proc/$pm_pid";
	usleep(100_000) unless $reaped;
}
note("old postmaster reaped: " . ($reaped ? "yes" : "no, removing postmaster.pid"));
unlink($node->data_dir . '/postmaster.pid') unless $reaped;

$log_offset = -s $node->logfile;
$node->start;
$node->wait_for_log(qr/orchestrator worker 1 started/, $log_offset);
pass('node restarts and its worker starts again');

my $after = submit_job($node, 'batch_test', '{"round": "r3", "n": 1}');
ok(wait_job_status($node, $after, 'completed'), 'a job submitted after the restart completes');

$node->stop;

done_testing();
