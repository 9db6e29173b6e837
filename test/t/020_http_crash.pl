
# Copyright (c) orchestrator authors
#
# The worker is killed with SIGKILL while 50 HTTP steps are in flight in its
# curl multi handle.  The postmaster crash-restarts the cluster; the parked
# jobs' leases (request timeout + lease_duration, over 10 minutes) are held
# by a process that no longer exists, so the restarted worker reclaims them
# at once and sends every request again.
# Every job completes, each exactly once, and every re-sent request carries
# the Idempotency-Key of its first try (orch-<job id>-<step index>), so the
# endpoint can tell the two tries are one call.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/..";

use JSON::PP;
use Time::HiRes qw(time);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OrchTest;

my ($org, $user) = ($ORG, $USER);
my $njobs = 50;
my $path = '/functions/v1/slow';

# ---------------------------------------------------------------------------
# the stand-in server (test/standin.py) on a free loopback port
# ---------------------------------------------------------------------------
my ($base, $port) = start_standin();
my $json = JSON::PP->new->canonical;

standin_reset();
ok(standin_stats()->{requests} == 0, "stand-in listens on port $port");

# ---------------------------------------------------------------------------
# the node
# ---------------------------------------------------------------------------
my $node = start_node(
	'http_crash',
	workers => 1,
	lease_duration => '10min',
	conf => "orchestrator.max_reclaims = 5\nrestart_after_crash = on\n");
install_extension($node);

# one http step, then an sql step that records that the job went on past it
$node->safe_psql(
	'postgres', qq{
CREATE TABLE public.after_call (job_id uuid, written_by integer, got jsonb);
CREATE FUNCTION public.after_call(s jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
	INSERT INTO public.after_call
	VALUES ((s->'execution_metadata'->>'sequence_job_id')::uuid, pg_backend_pid(), s->'outputs'->'call');
	RETURN '{}';
END \$\$;
SELECT orch_define_endpoint('slow', '$base$path', 5000, '{}');
SELECT orch_define_sequence('http_crash', '[
	{"name": "call", "kind": "http", "endpoint": "slow"},
	{"name": "after", "kind": "sql", "function": "after_call"}]');
});

ok(wait_for_workers($node, 1), 'one orchestrator worker is running');
my $worker_pid = worker_pid($node);
like($worker_pid, qr/^\d+$/, 'found the worker pid');

# Every request answers after 3 s (well inside the 5 s timeout), so the
# worker is killed long before any response is back.
standin_behave($path, mode => 'ok', delay_ms => 3000);

# 50 events in one transaction
$node->safe_psql(
	'postgres', qq{
CREATE TABLE public.crash_jobs AS
SELECT n, (orch_submit_event('http_crash', 'test', '$org', '$user', jsonb_build_object('n', n))).job_id
FROM generate_series(1, $njobs) n});
is($node->safe_psql('postgres', 'SELECT count(job_id), count(DISTINCT job_id) FROM public.crash_jobs'),
	"$njobs|$njobs", "$njobs events accepted, one job each");

# wait (bounded) until all 50 requests are being handled by the stand-in
my $stats = wait_standin_in_flight($njobs);
is($stats->{in_flight}, $njobs, "$njobs requests in flight at the stand-in at once");
is($stats->{requests}, $njobs, 'and no other request was made');
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FILTER (WHERE j.status = 'in_progress' AND j.lease_owner = $worker_pid AND j.fencing_token = 1
                          AND j.lease_expires_at > now() + interval '4 seconds'),
       count(*)
FROM public.crash_jobs c JOIN orchestrator.sequence_jobs j ON j.id = c.job_id}),
	"$njobs|$njobs",
	'every job is parked, leased to the worker past the request timeout');

# The stand-in fixes a request's behaviour when its headers are read: the
# 50 in flight keep their 3 s delay, and every request from now on (the
# re-sends) is answered at once.
standin_behave($path, mode => 'ok');

# Kill the worker with its 50 requests in flight.  The park (lease stretch)
# was committed synchronously before the requests were sent, so the crash
# cannot lose it.
my $log_offset = -s $node->logfile;
my $killed_at = time();
ok(kill('KILL', $worker_pid), 'sent SIGKILL to the worker');
wait_for_crash_restart($node, $worker_pid, $log_offset);
pass('postmaster reinitialised after the crash');

ok(wait_for_new_worker($node, $worker_pid), 'a new worker runs after the crash restart');
my $new_pid = worker_pid($node);

ok( $node->poll_query_until(
		'postgres', qq{
SELECT count(*) FILTER (WHERE j.status = 'completed') = $njobs
       OR count(*) FILTER (WHERE j.status IN ('failed', 'cancelled')) > 0
FROM public.crash_jobs c JOIN orchestrator.sequence_jobs j ON j.id = c.job_id}),
	'every job has finished');
my $done_at = time();

# ---------------------------------------------------------------------------
# the database's side
# ---------------------------------------------------------------------------
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FILTER (WHERE j.status = 'completed'), count(*)
FROM public.crash_jobs c JOIN orchestrator.sequence_jobs j ON j.id = c.job_id}),
	"$njobs|$njobs",
	"all $njobs jobs completed");
is($node->safe_psql('postgres', 'SELECT count(*) FROM orchestrator.sequence_jobs'),
	$njobs, "nothing lost or added: $njobs jobs in the queue");
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*), count(*) FILTER (WHERE e.outcome = 'accepted' AND c.job_id IS NOT NULL)
FROM orchestrator.event_log e LEFT JOIN public.crash_jobs c ON c.job_id = e.job_id}),
	"$njobs|$njobs",
	"$njobs event_log rows survived the crash, each naming its job");

# per job: the reclaim, then each step succeeded exactly once
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*), min(h), max(h) FROM (
	SELECT string_agg(kind || ':' || COALESCE(step_index::text, '-') || ':' || outcome
	                  || COALESCE(':' || http_status, ''), ',' ORDER BY id) AS h
	FROM orchestrator.step_history WHERE job_id IN (SELECT job_id FROM public.crash_jobs)
	GROUP BY job_id) s}),
	"$njobs|engine:0:lease_expired,http:0:succeeded:200,sql:1:succeeded|engine:0:lease_expired,http:0:succeeded:200,sql:1:succeeded",
	'every job: one lease_expired row, one succeeded row per step, nothing else');
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM orchestrator.step_history
WHERE job_id IN (SELECT job_id FROM public.crash_jobs)
  AND ((outcome = 'lease_expired' AND error LIKE 'lease of worker pid $worker_pid ended with its process%')
       OR outcome = 'succeeded')
  AND worker_pid = $new_pid}),
	3 * $njobs,
	'the lease_expired rows name the killed worker; the new worker wrote every row');
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM public.crash_jobs c JOIN orchestrator.sequence_jobs j ON j.id = c.job_id
WHERE j.fencing_token = 2 AND j.reclaims = 1 AND j.current_step = 2
  AND j.lease_owner IS NULL AND j.lease_expires_at IS NULL AND j.finished_at IS NOT NULL
  AND j.context->'steps_completed' = '["call", "after"]'
  AND j.context->'execution_metadata'->>'steps_failed' = '0'
  AND j.context->'outputs'->'call'->>'function' = 'slow'}),
	$njobs,
	'every job: claimed twice, reclaimed once, both steps done, lease cleared');
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*), count(DISTINCT a.job_id), bool_and(a.written_by = $new_pid), bool_and(a.got->>'ok' = 'true')
FROM public.after_call a JOIN public.crash_jobs c ON c.job_id = a.job_id}),
	"$njobs|$njobs|t|t",
	'the step after the call ran once per job, by the new worker, on the response');

my $log = slurp_file($node->logfile, $log_offset);
my $reclaimed = 0;
$reclaimed += $1 while $log =~ /orchestrator worker reclaimed (\d+) job\(s\) leased to processes that no longer exist/g;
is($reclaimed, $njobs, "server log shows the dead worker's $njobs leases reclaimed, long before they would lapse");

# ---------------------------------------------------------------------------
# the endpoint's side: what the stand-in received
# ---------------------------------------------------------------------------
my $records = standin_requests($path);
my %jobs = map { $_ => 1 } split /\n/,
  $node->safe_psql('postgres', 'SELECT job_id FROM public.crash_jobs');
my %by_job;
push @{ $by_job{ $_->{body}{sequence_job_id} // 'none' } }, $_ for @$records;

is(scalar(keys %by_job), $njobs, "the stand-in saw requests for $njobs jobs, and only those")
  or diag(join ', ', grep { !$jobs{$_} } keys %by_job);
my (%n_requests, @bad_key, @too_few, @not_resent, @body_changed);
for my $job (sort keys %jobs)
{
	my @reqs = sort { $a->{seq} <=> $b->{seq} } @{ $by_job{$job} // [] };
	$n_requests{ scalar @reqs }++;
	push @too_few, $job if @reqs < 2;
	push @bad_key, $job
	  if grep { ($_->{headers}{'idempotency-key'} // '') ne "orch-$job-0" } @reqs;
	next unless @reqs >= 2;
	# the first try went out before the kill, every other one after it
	push @not_resent, $job
	  unless $reqs[0]{started} < $killed_at
	  && !grep { $_->{started} < $killed_at } @reqs[ 1 .. $#reqs ];
	push @body_changed, $job
	  if grep { $json->encode($_->{body}) ne $json->encode($reqs[0]{body}) } @reqs[ 1 .. $#reqs ];
}
diag('requests per job: ' . join(', ', map { "$_ request(s): $n_requests{$_} job(s)" } sort keys %n_requests));
is(scalar(@too_few), 0, 'every job was requested at least twice: the first try and the re-send')
  or diag("jobs with fewer: @too_few");
is(scalar(@not_resent), 0, 'each first try was sent before the kill, each re-send after it')
  or diag("jobs: @not_resent");
is(scalar(@bad_key), 0, "every request of every job carries Idempotency-Key orch-<job id>-0")
  or diag("jobs with another key: @bad_key");
is(scalar(@body_changed), 0, 'each re-send carries the same body as the first try')
  or diag("jobs: @body_changed");
my %keys = map { ($_->{headers}{'idempotency-key'} // '') => 1 } @$records;
is(scalar(keys %keys), $njobs, "$njobs distinct Idempotency-Keys in all, one per job");
diag(sprintf('%d requests in all; %d in flight when the worker was killed; jobs done %.1f s after the kill',
		scalar(@$records), $stats->{in_flight}, $done_at - $killed_at));

$node->stop;
is(stop_standin(), 0, 'stand-in exited cleanly');

done_testing();
