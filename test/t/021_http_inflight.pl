
# Copyright (c) orchestrator authors
#
# One worker keeps many HTTP requests in flight at once in its curl multi
# handle, and keeps running other jobs meanwhile:
#   1. 200 jobs whose one http step takes 2 s at the endpoint: the
#      stand-in's recorded [started, finished] intervals show all 200
#      requests overlapping, and 20 sql-only jobs submitted after them
#      complete while those requests are still in flight
#   2. orchestrator.max_inflight = 50, set by a reload: the next 100
#      requests never overlap more than 50 at a time
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/..";

use List::Util qw(min max);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OrchTest;

my ($org, $user) = ($ORG, $USER);
my $path = '/functions/v1/two-seconds';

# ---------------------------------------------------------------------------
# the stand-in server (test/standin.py) on a free loopback port
# ---------------------------------------------------------------------------
my ($base, $port) = start_standin();

# max_overlap: the most requests whose [started, finished] intervals overlap
# (sweep line).  "finished" is set just before the response is written, so a
# request's interval ends before its client can have the response, and a
# request sent because of that response starts after it: at equal times an
# end is counted before a start.
sub max_overlap
{
	my @ev;
	for my $r (@_)
	{
		die "request $r->{seq} has not finished" unless defined $r->{finished};
		push @ev, [ $r->{started}, 1 ], [ $r->{finished}, -1 ];
	}
	my ($cur, $best) = (0, 0);
	for my $e (sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] } @ev)
	{
		$cur += $e->[1];
		$best = $cur if $cur > $best;
	}
	return $best;
}

standin_reset();
standin_behave($path, mode => 'ok', delay_ms => 2000);
pass("stand-in listens on port $port; $path answers after 2 s (long enough for the slowest build to have all 200 out)");

# ---------------------------------------------------------------------------
# the node: one worker, default max_inflight (1000)
# ---------------------------------------------------------------------------
my $node = start_node('http_inflight', workers => 1);
install_extension($node);

$node->safe_psql(
	'postgres', qq{
CREATE FUNCTION public.quick(s jsonb) RETURNS jsonb LANGUAGE sql AS \$\$ SELECT '{"quick": true}'::jsonb \$\$;
SELECT orch_define_endpoint('two-seconds', '$base$path', 10000, '{}');
SELECT orch_define_sequence('slow_call', '[{"name": "call", "kind": "http", "endpoint": "two-seconds"}]');
SELECT orch_define_sequence('quick', '[{"name": "quick", "kind": "sql", "function": "quick"}]');
});
is($node->safe_psql('postgres', 'SHOW orchestrator.max_inflight'), '1000', 'max_inflight is the default, 1000');
ok(wait_for_workers($node, 1), 'one orchestrator worker is running');

# job_epochs: status counts and [min started, max finished] of a batch, as epoch seconds
sub batch_summary
{
	my ($batch) = @_;
	return $node->safe_psql(
		'postgres', qq{
SELECT count(*) FILTER (WHERE j.status = 'completed'), count(*)
FROM public.batches b JOIN orchestrator.sequence_jobs j ON j.id = b.job_id WHERE b.batch = '$batch'});
}

sub wait_batch
{
	my ($batch) = @_;
	return $node->poll_query_until(
		'postgres', qq{
SELECT count(*) FILTER (WHERE j.status IN ('pending', 'in_progress')) = 0
FROM public.batches b JOIN orchestrator.sequence_jobs j ON j.id = b.job_id WHERE b.batch = '$batch'});
}

# ---------------------------------------------------------------------------
# 1. 200 slow requests at once, and other jobs run meanwhile
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE TABLE public.batches (batch text, n integer, job_id uuid)');
# the 200 in one transaction, then the 20 sql-only jobs in the next (so
# they are due, and claimed, after the 200)
$node->safe_psql(
	'postgres', qq{
INSERT INTO public.batches
SELECT 'slow', n, (orch_submit_event('slow_call', 'test', '$org', '$user', jsonb_build_object('n', n))).job_id
FROM generate_series(1, 200) n});
$node->safe_psql(
	'postgres', qq{
INSERT INTO public.batches
SELECT 'quick', n, (orch_submit_event('quick', 'test', '$org', '$user', jsonb_build_object('n', n))).job_id
FROM generate_series(1, 20) n});

# orchestrator.workers shows them in flight, from the worker's shared memory
ok( $node->poll_query_until(
		'postgres', "SELECT count(*) = 1 AND sum(http_in_flight) = 200 AND bool_and(pid > 0) FROM orchestrator.workers"),
	'orchestrator.workers shows the one worker with 200 requests in flight');
ok(wait_batch('slow') && wait_batch('quick'), 'both batches finished');
is($node->safe_psql('postgres', 'SELECT worker || \':\' || http_in_flight FROM orchestrator.workers'),
	'1:0', 'and none in flight once they are answered');
is(batch_summary('slow'), '200|200', 'all 200 http jobs completed');
is(batch_summary('quick'), '20|20', 'all 20 sql jobs completed');
my $records = standin_requests($path);
my $stats = standin_stats();
is(scalar(@$records), 200, '200 requests reached the stand-in, one per job');
is( scalar(grep { ($_->{status} // 0) == 200 } @$records),
	200, 'each was answered 200');

my $overlap = max_overlap(@$records);
diag("round 1: largest number of requests in flight at once: $overlap by the recorded intervals, "
	  . "$stats->{max_in_flight} by the stand-in's max_in_flight");
cmp_ok($overlap, '>=', 200, 'the recorded intervals show all 200 requests in flight at the same moment');
cmp_ok($stats->{max_in_flight}, '>=', 200, 'the stand-in counted 200 in flight at once');
is( $node->safe_psql(
		'postgres',
		"SELECT count(DISTINCT h.worker_pid) FROM orchestrator.step_history h JOIN public.batches b ON b.job_id = h.job_id"),
	'1',
	'all of it was one worker');

# The sql jobs were claimed after the 200 had been sent, and were done
# before the first response had been written: the worker ran them while
# all of its requests were in flight.
my $first_started = min(map { $_->{started} } @$records);
my $first_finished = min(map { $_->{finished} } @$records);
my ($quick_started, $quick_finished) = split /\|/, $node->safe_psql(
	'postgres', q{
SELECT extract(epoch FROM min(j.started_at)), extract(epoch FROM max(j.finished_at))
FROM public.batches b JOIN orchestrator.sequence_jobs j ON j.id = b.job_id WHERE b.batch = 'quick'});
diag(sprintf('sql jobs ran from +%.3f s to +%.3f s after the first request; first response at +%.3f s',
		$quick_started - $first_started, $quick_finished - $first_started, $first_finished - $first_started));
cmp_ok($quick_started, '>', $first_started, 'the sql jobs started after the first request was in flight');
cmp_ok($quick_finished, '<', $first_finished, 'and were all done before any response had been sent');

# ---------------------------------------------------------------------------
# 2. max_inflight = 50, by a configuration reload
# ---------------------------------------------------------------------------
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', 'ALTER SYSTEM SET orchestrator.max_inflight = 50');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
$node->wait_for_log(qr/orchestrator worker 1 reloaded its configuration/, $log_offset);
pass('the worker reloaded its configuration');
is($node->safe_psql('postgres', 'SHOW orchestrator.max_inflight'), '50', 'max_inflight is now 50');

# a fresh count at the stand-in (round 1's records are read already)
standin_reset();
standin_behave($path, mode => 'ok', delay_ms => 2000);
$node->safe_psql(
	'postgres', qq{
INSERT INTO public.batches
SELECT 'capped', n, (orch_submit_event('slow_call', 'test', '$org', '$user', jsonb_build_object('n', 1000 + n))).job_id
FROM generate_series(1, 100) n});
ok(wait_batch('capped'), 'the 100 capped jobs finished');
is(batch_summary('capped'), '100|100', 'all 100 completed');
$records = standin_requests($path);
$stats = standin_stats();
is(scalar(@$records), 100, '100 requests reached the stand-in');
$overlap = max_overlap(@$records);
diag("round 2 (max_inflight 50): largest number in flight at once: $overlap by the recorded intervals, "
	  . "$stats->{max_in_flight} by the stand-in's max_in_flight");
cmp_ok($overlap, '<=', 50, 'never more than 50 requests in flight at once');
cmp_ok($overlap, '>', 25, 'but well more than half of that: the cap, not something else, was the limit');

$node->stop;
is(stop_standin(), 0, 'stand-in exited cleanly');

done_testing();
