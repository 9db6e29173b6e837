
# Copyright (c) orchestrator authors
#
# Approval gates across crashes.  Jobs waiting for approval hold no lease:
# a worker killed meanwhile changes nothing, and they stay waiting.  Once
# approved, the gated email step's request is in flight when the worker is
# killed again: after the crash restart each job is reclaimed, re-sends its
# request with the same Idempotency-Key (orch-<job>-<step>), needs no second
# approval, and runs the steps after it exactly once.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/..";

use Time::HiRes qw(time);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OrchTest;

my ($org, $user) = ($ORG, $USER);
my $njobs = 5;
my $path = '/functions/v1/email-send-as-rep';

my ($base, $port) = start_standin();
standin_reset();

my $node = start_node(
	'approval_crash',
	workers => 1,
	lease_duration => '2s',
	conf => "orchestrator.max_reclaims = 5\nrestart_after_crash = on\n");
install_extension($node);

$node->safe_psql('postgres', qq{
CREATE TABLE public.after_send (job_id uuid, got jsonb);
CREATE FUNCTION public.draft(s jsonb) RETURNS jsonb LANGUAGE sql
AS \$\$ SELECT jsonb_build_object('to', 'grace\@globex.example', 'subject', 'Proposal', 'body', 'Hi') \$\$;
CREATE FUNCTION public.after_send(s jsonb) RETURNS jsonb LANGUAGE sql AS \$\$
	INSERT INTO public.after_send VALUES ((s->'execution_metadata'->>'sequence_job_id')::uuid, s->'outputs'->'send');
	SELECT '{}'::jsonb \$\$;
SELECT orch_set_secret('slack_bot_token', 'xoxb-crash-test');
SELECT orch_define_endpoint('slack', '$base/api/chat.postMessage', 5000, '{"Authorization": "Bearer {{secret:slack_bot_token}}"}');
INSERT INTO orchestrator.slack_user_mappings (user_id, org_id, slack_user_id, slack_team_id) VALUES ('$user', '$org', 'U0ANN', 'T0ACME');
SELECT orch_define_endpoint('email-send-as-rep', '$base$path', 5000, '{}');
SELECT orch_define_sequence('crash_email', '[
	{"name": "draft", "kind": "sql", "function": "draft"},
	{"name": "send", "kind": "http", "endpoint": "email-send-as-rep", "approval": {"pattern": "email_draft", "draft": "draft"}},
	{"name": "after", "kind": "sql", "function": "after_send"}]');
CREATE TABLE public.jobs AS
SELECT n, (orch_submit_event('crash_email', 'test', '$org', '$user', jsonb_build_object('n', n))).job_id
FROM generate_series(1, $njobs) n;
});

ok( $node->poll_query_until('postgres', qq{
SELECT count(*) = $njobs FROM orchestrator.sequence_jobs WHERE event_type = 'crash_email' AND status = 'awaiting_approval'}),
	"$njobs jobs wait for approval");
ok( $node->poll_query_until('postgres', qq{
SELECT count(*) = $njobs FROM orchestrator.sequence_jobs WHERE event_type = 'orchestrator:approval_request' AND status = 'completed'}),
	'their approval requests reached Slack');
is($node->safe_psql('postgres', qq{SELECT count(*) FROM orchestrator.sequence_jobs WHERE event_type = 'crash_email' AND lease_owner IS NOT NULL}),
	'0', 'waiting jobs hold no lease');

# a crash while they wait changes nothing
ok(wait_for_workers($node, 1), 'the worker runs');
my $pid = worker_pid($node);
my $offset = -s $node->logfile;
ok(kill('KILL', $pid), 'killed the worker while the jobs wait');
wait_for_crash_restart($node, $pid, $offset);
ok(wait_for_new_worker($node, $pid), 'a new worker runs after the crash restart');
$pid = worker_pid($node);
is( $node->safe_psql('postgres', qq{
SELECT count(*) FILTER (WHERE j.status = 'awaiting_approval' AND a.status = 'pending'), count(*)
FROM orchestrator.sequence_jobs j JOIN orchestrator.slack_pending_actions a ON a.job_id = j.id WHERE j.event_type = 'crash_email'}),
	"$njobs|$njobs", 'after the crash every job still waits, its approval still pending');
is(scalar(@{ standin_requests($path) }), 0, 'and no email was sent');

# approve them all; every send is held for 3 s at the stand-in
standin_behave($path, mode => 'ok', delay_ms => 3000);
is( $node->safe_psql('postgres', qq{
SELECT string_agg(DISTINCT r.outcome, ',') FROM orchestrator.slack_pending_actions a, orch_resolve_approval(a.id, 'approve') r
WHERE a.status = 'pending'}),
	'resolved', 'every approval resolved');
is(wait_standin_in_flight($njobs)->{in_flight}, $njobs, "$njobs approved sends in flight");
standin_behave($path, mode => 'ok');

my $killed_at = time();
$offset = -s $node->logfile;
ok(kill('KILL', $pid), 'killed the worker with the sends in flight');
wait_for_crash_restart($node, $pid, $offset);
ok(wait_for_new_worker($node, $pid), 'a new worker runs after the second crash');
ok( $node->poll_query_until('postgres', qq{
SELECT count(*) FILTER (WHERE status = 'completed') = $njobs OR count(*) FILTER (WHERE status IN ('failed', 'cancelled')) > 0
FROM orchestrator.sequence_jobs WHERE event_type = 'crash_email'}),
	'every job finished');

is($node->safe_psql('postgres', qq{SELECT count(*) FROM orchestrator.sequence_jobs WHERE event_type = 'crash_email' AND status = 'completed'}),
	$njobs, 'all completed');
is( $node->safe_psql('postgres', qq{
SELECT count(*), min(h), max(h) FROM (
	SELECT string_agg(h.kind || ':' || COALESCE(h.step_name, '-') || ':' || h.outcome, ',' ORDER BY h.id) AS h
	FROM orchestrator.step_history h JOIN orchestrator.sequence_jobs j ON j.id = h.job_id
	WHERE j.event_type = 'crash_email' GROUP BY h.job_id) s}),
	"$njobs|sql:draft:succeeded,http:send:awaiting_approval,approval:send:approved,engine:-:lease_expired,http:send:succeeded,sql:after:succeeded"
	  . "|sql:draft:succeeded,http:send:awaiting_approval,approval:send:approved,engine:-:lease_expired,http:send:succeeded,sql:after:succeeded",
	'every job: one gate, one approval, one reclaim, the send and the step after it once each');
is($node->safe_psql('postgres', 'SELECT count(*), count(DISTINCT job_id) FROM public.after_send'),
	"$njobs|$njobs", 'the step after the send ran once per job');
is($node->safe_psql('postgres', qq{SELECT count(*) FROM orchestrator.slack_pending_actions}),
	$njobs, 'no second approval was asked for');

my %by_job;
push @{ $by_job{ $_->{body}{sequence_job_id} } }, $_ for @{ standin_requests($path) };
my @jobs = split /\n/, $node->safe_psql('postgres', 'SELECT job_id FROM public.jobs');
my @bad = grep {
	my $j = $_;
	my @r = @{ $by_job{$j} // [] };
	@r < 2 || grep { ($_->{headers}{'idempotency-key'} // '') ne "orch-$j-1" } @r
} @jobs;
is(scalar(@bad), 0, 'each send went out before the kill and again after it, always as Idempotency-Key orch-<job>-1')
  or diag("jobs: @bad");

$node->stop;
is(stop_standin(), 0, 'stand-in exited cleanly');
done_testing();
