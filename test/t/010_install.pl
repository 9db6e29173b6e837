# Installing without the preload warns and still works; pg_dump and restore
# keep definitions, settings and job state.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/..";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OrchTest;

# the user these tests submit as
my %a1 = (user => '00000000-0000-0000-0000-0000000000a1', display_name => undef);

# --- without shared_preload_libraries: a WARNING with a hint, SQL still works
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->start;
my ($ret, $stdout, $stderr) = $plain->psql('postgres', 'CREATE EXTENSION orchestrator');
is($ret, 0, 'CREATE EXTENSION succeeds without the preload');
like($stderr, qr/WARNING:  orchestrator is not loaded through shared_preload_libraries, so no worker will run jobs/,
	'it warns that no worker will run');
like($stderr, qr/HINT:  Add orchestrator to shared_preload_libraries/, 'with a hint saying what to do');
add_org_user($plain, %a1);
$plain->safe_psql('postgres', q{
	CREATE FUNCTION noop(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
	SELECT orch_define_sequence('ping', '[{"name": "noop", "kind": "sql", "function": "noop"}]');
});
is($plain->safe_psql('postgres', q{SELECT outcome FROM orch_submit_event('ping', 'test', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', '{}')}),
	'accepted', 'events are accepted without workers');
is($plain->safe_psql('postgres', q{SELECT status FROM orchestrator.sequence_jobs}),
	'pending', 'and wait, pending, for a worker');
is($plain->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'orchestrator worker'}),
	'0', 'no worker runs');
$plain->stop;

# --- pg_dump and restore keep definitions, settings and jobs
my $node = start_node('dump', database => 'src');
$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('postgres', 'CREATE DATABASE dst');
install_extension($node, db => 'src', %a1);
$node->safe_psql('src', q{
	-- quiet hours that are never now, whatever the time of day the test runs
	INSERT INTO orchestrator.slack_user_preferences (user_id, org_id, timezone, quiet_hours_start, quiet_hours_end)
		VALUES ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-00000000000a', 'Europe/Paris',
		        ((now() AT TIME ZONE 'Europe/Paris') + interval '2 hours')::time,
		        ((now() AT TIME ZONE 'Europe/Paris') + interval '3 hours')::time);
	INSERT INTO orchestrator.notification_feature_settings (org_id, feature_key, is_enabled)
		VALUES ('00000000-0000-0000-0000-00000000000a', 'morning_brief', false);
	INSERT INTO orchestrator.cost_budgets (org_id, monthly_budget_usd) VALUES ('00000000-0000-0000-0000-00000000000a', 50);
	CREATE FUNCTION noop(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
	SELECT orch_define_sequence('ping', '[{"name": "noop", "kind": "sql", "function": "noop"}]');
	SELECT orch_define_sequence('ping', '[{"name": "noop", "kind": "sql", "function": "noop", "on_failure": "continue"}]');
	SELECT orch_submit_event('ping', 'test', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', '{"n": 1}');
});
ok($node->poll_query_until('src', q{SELECT count(*) = 1 FROM orchestrator.sequence_jobs WHERE status = 'completed'}),
	'the job ran in the source database');

my $dump = $node->basedir . '/src.sql';
$node->command_ok(['pg_dump', '-d', $node->connstr('src'), '-f', $dump], 'pg_dump succeeds');
$node->command_ok(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('dst'), '-f', $dump],
	'the dump restores without errors');

my $counts = q{SELECT (SELECT count(*) FROM orchestrator.sequence_definitions WHERE event_type NOT LIKE 'orchestrator:%') || ',' ||
	(SELECT max(version) FROM orchestrator.sequence_definitions WHERE event_type = 'ping') || ',' ||
	(SELECT count(*) FROM orchestrator.orgs) || ',' || (SELECT count(*) FROM orchestrator.users) || ',' ||
	(SELECT timezone FROM orchestrator.slack_user_preferences) || ',' ||
	(SELECT count(*) FROM orchestrator.notification_feature_settings) || ',' ||
	(SELECT monthly_budget_usd FROM orchestrator.cost_budgets) || ',' ||
	(SELECT string_agg(status, ',') FROM orchestrator.sequence_jobs) || ',' ||
	(SELECT count(*) FROM orchestrator.event_log) || ',' || (SELECT count(*) FROM orchestrator.step_history)};
is($node->safe_psql('dst', $counts), $node->safe_psql('src', $counts),
	'definitions, settings, jobs, events and history survive dump and restore');
is($node->safe_psql('dst', $counts), '2,2,1,1,Europe/Paris,1,50,completed,1,1', 'with the expected contents');
# the built-in sequences come from the extension script, once, not from the dump
is($node->safe_psql('dst', q{SELECT string_agg(event_type || ' v' || version, ', ' ORDER BY event_type) FROM orchestrator.sequence_definitions WHERE event_type LIKE 'orchestrator:%'}),
	'orchestrator:approval_expired v1, orchestrator:approval_request v1, orchestrator:budget_notice v1, orchestrator:failure_notice v1', 'built-in sequences are not duplicated by the restore');
# the restored extension is usable: its sequences continue past the restored ids
is($node->safe_psql('dst', q{SELECT outcome FROM orch_submit_event('ping', 'test', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', '{"n": 2}')}),
	'accepted', 'the restored database accepts events');
is($node->safe_psql('dst', q{SELECT count(DISTINCT id) FROM orchestrator.event_log}), '2', 'event ids do not collide after restore');

$node->stop;
done_testing();
