
# Copyright (c) orchestrator authors
#
# Recovery in seconds, not lease lapses: a worker is killed with SIGKILL
# while the two workers hold 50 sql jobs (one of them blocked in its step)
# and 50 HTTP requests in flight, every lease 10 minutes long
# (lease_duration 10min, the requests' timeout 10 minutes).  After the
# crash restart, the new workers' first passes take back every job leased
# to a process that no longer exists, each job once (a worker that starts
# and claims while another is still taking back is not mistaken for a dead
# one), so all 100 complete long before any lease could lapse.
# The time from "ready to accept connections" to the last job's end is
# printed; the bounded waits assert only that it happens.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/..";

use Time::HiRes qw(time);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OrchTest;

my $n = 50;
my $path = '/functions/v1/recover';
my ($base, $port) = start_standin();
standin_reset();

my $node = start_node(
	'crash_recovery',
	workers => 2,
	lease_duration => '10min',
	conf => "orchestrator.batch_size = 64\nrestart_after_crash = on\n");
install_extension($node);

$node->safe_psql(
	'postgres', qq{
CREATE TABLE public.done (job_id uuid, by_pid integer);
-- waits while the test holds advisory lock 4243, then records its job
CREATE FUNCTION public.gated(s jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
	PERFORM pg_advisory_xact_lock_shared(4243);
	INSERT INTO public.done VALUES ((s->'execution_metadata'->>'sequence_job_id')::uuid, pg_backend_pid());
	RETURN '{}';
END \$\$;
SELECT orch_define_endpoint('recover', '$base$path', 600000, '{}');
SELECT orch_define_sequence('rec_http', '[{"name": "call", "kind": "http", "endpoint": "recover"}]');
SELECT orch_define_sequence('rec_sql', '[{"name": "gated", "kind": "sql", "function": "gated"}]');
});
ok(wait_for_workers($node, 2), 'two workers run');
my $workers = "(SELECT pid FROM pg_stat_activity WHERE backend_type = 'orchestrator worker')";

# the 50 requests hang (their timeout is 10 minutes); the re-sends answer
standin_behave($path, mode => 'hang', times => $n);
$node->safe_psql('postgres',
	"SELECT orch_submit_event('rec_http', 'test', '$ORG', '$USER', jsonb_build_object('n', n)) FROM generate_series(1, $n) n"
);
is(wait_standin_in_flight($n)->{in_flight}, $n, "$n requests in flight");

# then 50 sql jobs, claimed in one batch, the first blocked in its step
my $holder = $node->background_psql('postgres');
$holder->query_safe('SELECT pg_advisory_lock(4243)');
$node->safe_psql('postgres',
	"SELECT orch_submit_event('rec_sql', 'test', '$ORG', '$USER', jsonb_build_object('n', n)) FROM generate_series(1, $n) n"
);
ok( $node->poll_query_until(
		'postgres', qq{
SELECT count(*) FROM orchestrator.sequence_jobs
WHERE status = 'in_progress' AND lease_owner IN $workers AND lease_expires_at > now() + interval '9 minutes'}, 2 * $n),
	"all $n sql and $n http jobs leased to the workers for over 9 minutes");
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'orchestrator worker' AND wait_event_type = 'Lock'}),
	'a worker is blocked in an sql step');
# the claims must be durable for the restarted worker to find them leased
$node->safe_psql('postgres', 'CHECKPOINT');

my @old_pids = split /\n/, worker_pid($node);
my $worker_pid = $old_pids[0];
my $log_offset = -s $node->logfile;
ok(kill('KILL', $worker_pid), 'SIGKILL to a worker');
wait_for_crash_restart($node, $worker_pid, $log_offset);
$holder->quit;
$node->wait_for_log(qr/database system is ready to accept connections/, $log_offset);
my $ready_at = time();

ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) FILTER (WHERE status = 'completed') FROM orchestrator.sequence_jobs
WHERE event_type IN ('rec_sql', 'rec_http')}, 2 * $n),
	'every job completed, though no lease lapsed');
my $done_at = time();
diag(sprintf('recovery: all %d jobs completed %.2f s after the server accepted connections again',
		2 * $n, $done_at - $ready_at));

is( $node->safe_psql(
		'postgres', qq{
SELECT count(*), count(DISTINCT h.job_id),
       count(*) FILTER (WHERE h.error ~ '^lease of worker pid ($old_pids[0]|$old_pids[1]) ended with its process; job returned to the queue\$')
FROM orchestrator.step_history h WHERE h.outcome = 'lease_expired'}),
	(2 * $n) . '|' . (2 * $n) . '|' . (2 * $n),
	'each job taken back once, as leased to a process that no longer exists');
my $log = slurp_file($node->logfile, $log_offset);
my $reclaimed = 0;
$reclaimed += $1 while $log =~ /orchestrator worker reclaimed (\d+) job\(s\) leased to processes that no longer exist/g;
is($reclaimed, 2 * $n, 'the new workers say so');
is($node->safe_psql('postgres', 'SELECT count(*), count(DISTINCT job_id) FROM public.done'),
	"$n|$n", 'each sql step committed once');
is(scalar(@{ standin_requests($path) }), 2 * $n, 'each request sent twice: the hung one, and once more');
is($node->safe_psql('postgres', 'SELECT count(*) FROM orchestrator.stuck_jobs'), '0', 'nothing is stuck');

$node->stop;
stop_standin();
done_testing();
