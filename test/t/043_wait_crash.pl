
# Copyright (c) orchestrator authors
#
# Waits survive a crash.  Twenty jobs wait for a signal, twenty sleep for
# a few seconds, one waits for an approval that expires, and one fans out
# to five children that wait for signals too; then a worker is killed with
# SIGKILL and the server restarts.  Signals sent after the restart reach
# every waiting job, each exactly once; the sleepers wake no sooner than
# their time; the approval still expires and the user is told; the fan-out
# collects its five children's outputs in order; nothing is left waiting
# and no step ran twice.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/..";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OrchTest;

my $n = 20;
my ($base, $port) = start_standin();
standin_reset();

my $node = start_node(
	'wait_crash',
	workers => 2,
	lease_duration => '10min',
	conf => "restart_after_crash = on\n");
install_extension($node);

$node->safe_psql(
	'postgres', qq{
INSERT INTO orchestrator.slack_user_mappings (user_id, org_id, slack_user_id) VALUES ('$USER', '$ORG', 'U1');
INSERT INTO orchestrator.slack_user_preferences (user_id, org_id, max_notifications_per_hour) VALUES ('$USER', '$ORG', 1000);
SELECT orch_set_secret('slack_bot_token', 'xoxb-test');
SELECT orch_define_endpoint('slack', '$base/api/chat.postMessage', 5000, '{"Authorization": "Bearer {{secret:slack_bot_token}}"}');
CREATE TABLE public.ran (job_id uuid, step text);
CREATE FUNCTION public.record(s jsonb) RETURNS jsonb LANGUAGE sql AS \$\$
	INSERT INTO public.ran VALUES ((s->'execution_metadata'->>'sequence_job_id')::uuid, 'after');
	SELECT jsonb_build_object('reply', s->'outputs'->'reply') \$\$;
SELECT orch_define_sequence('w_signal', '[{"name": "reply", "kind": "signal", "signal": "go", "key": "\$.event.payload.k"},
                                          {"name": "after", "kind": "sql", "function": "public.record"}]');
SELECT orch_define_sequence('w_sleep', '[{"name": "nap", "kind": "sleep", "for": "4 seconds"},
                                         {"name": "after", "kind": "sql", "function": "public.record"}]');
SELECT orch_define_sequence('w_fan', '[{"name": "fan", "kind": "fan_out", "sequence": "w_signal",
                                         "for_each": "\$.event.payload.keys[*]", "payload": {"k": "@"}}]');
SELECT orch_define_sequence('w_gate', '[{"name": "gated", "kind": "sql", "function": "public.record", "requires_approval": true,
                                         "approval": {"timeout": "3 seconds", "on_timeout": "skip"}}]');
});
ok(wait_for_workers($node, 2), 'two workers run');

$node->safe_psql('postgres', qq{
SELECT orch_submit_event('w_signal', 'test', '$ORG', '$USER', jsonb_build_object('k', 'k' || n)) FROM generate_series(1, $n) n;
SELECT orch_submit_event('w_sleep', 'test', '$ORG', '$USER', jsonb_build_object('n', n)) FROM generate_series(1, $n) n;
SELECT orch_submit_event('w_gate', 'test', '$ORG', '$USER', '{}');
SELECT orch_submit_event('w_fan', 'test', '$ORG', '$USER', '{"keys": ["f1", "f2", "f3", "f4", "f5"]}');
});
ok( $node->poll_query_until(
		'postgres', q{SELECT count(*) FROM orchestrator.waits}, 2 * $n + 6),
	'twenty jobs wait for a signal, twenty sleep, and a fan-out waits for its five children, who wait for signals');
ok( $node->poll_query_until(
		'postgres', q{SELECT count(*) FROM orchestrator.slack_pending_actions WHERE status = 'pending'}, 1),
	'one job waits for an approval');
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM orchestrator.sequence_jobs WHERE status = 'in_progress'}),
	'0', 'no waiting job holds a worker');
$node->safe_psql('postgres', 'CHECKPOINT');

my @old_pids = split /\n/, worker_pid($node);
my $log_offset = -s $node->logfile;
ok(kill('KILL', $old_pids[0]), 'SIGKILL to a worker');
wait_for_crash_restart($node, $old_pids[0], $log_offset);
$node->wait_for_log(qr/database system is ready to accept connections/, $log_offset);

is($node->safe_psql('postgres', q{SELECT count(*) FROM orchestrator.waits}), 2 * $n + 6, 'every wait survived the crash');
$node->safe_psql('postgres',
	"SELECT orch_signal_key('k' || n, 'go', jsonb_build_object('n', n)) FROM generate_series(1, $n) n");
$node->safe_psql('postgres',
	"SELECT orch_signal_key('f' || n, 'go', jsonb_build_object('n', n)) FROM generate_series(1, 5) n");

ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) FROM orchestrator.sequence_jobs WHERE event_type IN ('w_signal', 'w_sleep', 'w_gate', 'w_fan') AND status = 'completed'},
		2 * $n + 7),
	'every job completed');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*), count(DISTINCT delivered_to), count(*) FILTER (WHERE payload->>'n' = substr(key, 2)) FROM orchestrator.signals}),
	($n + 5) . '|' . ($n + 5) . '|' . ($n + 5), 'each signal delivered once, to the job waiting on its key');
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(r->'outputs'->'reply'->>'n', ',')
FROM orchestrator.sequence_jobs j, jsonb_array_elements(j.context->'outputs'->'fan'->'results') r
WHERE j.event_type = 'w_fan'}),
	'1,2,3,4,5', 'the fan-out collected its children\'s outputs in order');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM orchestrator.sequence_jobs j
WHERE j.event_type = 'w_signal' AND j.context->'outputs'->'reply'->>'n' = substr(j.trigger_payload->>'k', 2)}),
	$n + 5, 'each signal step output its own payload');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM orchestrator.step_history h JOIN orchestrator.sequence_jobs j ON j.id = h.job_id
WHERE j.event_type = 'w_sleep' AND h.step_name = 'nap' AND h.outcome = 'succeeded'
  AND h.finished_at >= j.created_at + interval '4 seconds'}),
	$n, 'each sleeper woke no sooner than its time');
is($node->safe_psql('postgres', 'SELECT count(*), count(DISTINCT job_id) FROM public.ran'),
	(2 * $n + 5) . '|' . (2 * $n + 5), 'each later step ran once (the skipped gate ran nothing)');
is( $node->safe_psql(
		'postgres', q{SELECT status || '/' || resolved_via FROM orchestrator.slack_pending_actions}),
	'skipped/timeout', 'the approval expired after the restart and was skipped');
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) FROM orchestrator.sequence_jobs WHERE event_type = 'orchestrator:approval_expired' AND status = 'completed'}, 1),
	'the user was told')
  or diag($node->safe_psql('postgres', q{
SELECT string_agg(event_type || ' ' || status || ' ' || coalesce(last_error, ''), E'\n') FROM orchestrator.sequence_jobs
WHERE event_type LIKE 'orchestrator:%'}) . "\n" . $node->safe_psql('postgres', q{
SELECT string_agg(outcome || ' ' || coalesce(reason, ''), E'\n') FROM orchestrator.event_log WHERE event_type LIKE 'orchestrator:%'}));
is($node->safe_psql('postgres', 'SELECT count(*) FROM orchestrator.waits'), '0', 'nothing is left waiting');
is($node->safe_psql('postgres', 'SELECT count(*) FROM orchestrator.stuck_jobs'), '0', 'nothing is stuck');

$node->stop;
stop_standin();
done_testing();
