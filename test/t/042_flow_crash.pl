
# Copyright (c) orchestrator authors
#
# A concurrency limit survives a crash.  Under a limit of 2 jobs per org,
# six HTTP jobs are submitted: two send their (slow) requests, four wait
# for a slot.  A worker is killed with SIGKILL while both requests are out.
# After the crash restart the two are taken back, and every job completes:
# the waiting ones are woken as slots free, not lost, each step succeeds
# once, and the requests made after the restart never number more than two
# at a time (the stand-in records when each started and finished).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/..";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OrchTest;

my $n = 6;
my $path = '/functions/v1/limited';
my ($base, $port) = start_standin();
standin_reset();

my $node = start_node(
	'flow_crash',
	workers => 2,
	lease_duration => '10min',
	conf => "restart_after_crash = on\n");
install_extension($node);

$node->safe_psql(
	'postgres', qq{
SELECT orch_define_endpoint('limited', '$base$path', 600000, '{}');
SELECT orch_define_sequence('limited', '[{"name": "call", "kind": "http", "endpoint": "limited"}]');
SELECT orch_set_concurrency_limit('org', '*', 2);
});
ok(wait_for_workers($node, 2), 'two workers run');

# the first two requests take 5 s: the crash comes while both are out
standin_behave($path, mode => 'ok', delay_ms => 5000, times => 2);
$node->safe_psql('postgres',
	"SELECT orch_submit_event('limited', 'test', '$ORG', '$USER', jsonb_build_object('n', n)) FROM generate_series(1, $n) n"
);
is(wait_standin_in_flight(2)->{in_flight}, 2, 'two requests are out');
ok( $node->poll_query_until(
		'postgres', 'SELECT count(*) FROM orchestrator.flow_waits', $n - 2),
	'the other four wait for a slot');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM orchestrator.sequence_jobs WHERE status = 'in_progress'}),
	'2', 'two jobs are in progress');
$node->safe_psql('postgres', 'CHECKPOINT');

# from now on each request takes 0.3 s, so any overlap beyond the limit shows
standin_behave($path, mode => 'ok', delay_ms => 300);
my $seen = scalar(@{ standin_requests($path) });
my @old_pids = split /\n/, worker_pid($node);
my $log_offset = -s $node->logfile;
ok(kill('KILL', $old_pids[0]), 'SIGKILL to a worker');
wait_for_crash_restart($node, $old_pids[0], $log_offset);
$node->wait_for_log(qr/database system is ready to accept connections/, $log_offset);

ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) FROM orchestrator.sequence_jobs WHERE event_type = 'limited' AND status = 'completed'}, $n),
	'every job completed after the restart');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*), count(DISTINCT job_id) FROM orchestrator.step_history
WHERE outcome = 'succeeded' AND step_name = 'call'}),
	"$n|$n", 'each step succeeded once');
ok( $node->safe_psql(
		'postgres', q{
SELECT count(*) > 0 FROM orchestrator.step_history
WHERE outcome = 'deferred' AND error LIKE 'waiting for a slot: org:% is at its limit of 2 job(s) in progress'}) eq 't',
	'the waits were recorded as deferrals, with why');
is($node->safe_psql('postgres', 'SELECT count(*) FROM orchestrator.flow_waits'), '0', 'no job is left waiting');
is($node->safe_psql('postgres', 'SELECT count(*) FROM orchestrator.stuck_jobs'), '0', 'nothing is stuck');

# the requests sent after the restart: at most two at any moment
my @after = grep { $_->{seq} > $seen } @{ standin_requests($path) };
cmp_ok(scalar(@after), '>=', $n, 'every job sent its request after the restart');
my $most = 0;
for my $r (@after)
{
	my $at = $r->{started};
	my $open = grep { $_->{started} <= $at && (!defined $_->{finished} || $_->{finished} > $at) } @after;
	$most = $open if $open > $most;
}
cmp_ok($most, '<=', 2, "at most two requests at a time after the restart (saw $most)");

$node->stop;
stop_standin();
done_testing();
