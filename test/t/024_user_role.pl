
# Copyright (c) orchestrator authors
#
# orchestrator.user_role: user-scoped step functions run as the configured
# role (Supabase's "authenticated"), with the job's user in
# request.jwt.claims, so RLS policies written for PostgREST decide what the
# step sees; a service-scope step runs as the definer.  A role that does not
# exist fails the step with a hint, and nothing runs as the worker.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/..";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OrchTest;

my $other = '00000000-0000-0000-0000-0000000000a9';
my $node = start_node('user_role', workers => 1);
install_extension($node);
$node->safe_psql('postgres', "INSERT INTO orchestrator.users (id, org_id) VALUES ('$other', '$ORG')");

$node->safe_psql('postgres', qq{
CREATE ROLE authenticated NOLOGIN;
CREATE SCHEMA app;
GRANT USAGE ON SCHEMA app TO authenticated;
CREATE TABLE app.deals (user_id uuid NOT NULL, name text NOT NULL);
ALTER TABLE app.deals ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_deals ON app.deals TO authenticated
	USING (user_id = (current_setting('request.jwt.claims', true)::jsonb->>'sub')::uuid);
GRANT SELECT ON app.deals TO authenticated;
INSERT INTO app.deals VALUES ('$USER', 'Globex'), ('$USER', 'Initech'), ('$other', 'Umbrella');
CREATE FUNCTION app.pipeline(state jsonb) RETURNS jsonb LANGUAGE sql AS \$\$
	SELECT jsonb_build_object('who', current_user,
	                          'deals', (SELECT COALESCE(jsonb_agg(name ORDER BY name), '[]') FROM app.deals))
\$\$;
GRANT EXECUTE ON FUNCTION app.pipeline(jsonb) TO authenticated;
SELECT orch_define_sequence('scan', '[
  {"name": "mine", "kind": "sql", "function": "app.pipeline"},
  {"name": "org-wide", "kind": "sql", "function": "app.pipeline", "scope": "service"}]');
});

# set the role and wait until the worker has reloaded it
sub set_user_role
{
	my ($role) = @_;
	my $offset = -s $node->logfile;
	$node->safe_psql('postgres', "ALTER SYSTEM SET orchestrator.user_role = '$role'; SELECT pg_reload_conf();");
	$node->wait_for_log(qr/orchestrator worker \d+ reloaded its configuration/, $offset);
	return;
}

set_user_role('authenticated');
my $job = submit_job($node, 'scan', '{}');
ok(wait_job_status($node, $job, 'completed'), 'the scan completed');
is( $node->safe_psql('postgres', qq{
		SELECT context->'outputs'->'mine'->>'who' || ' ' || (context->'outputs'->'mine'->'deals')::text
		FROM orchestrator.sequence_jobs WHERE id = '$job'}),
	'authenticated ["Globex", "Initech"]',
	'the user-scoped step ran as authenticated and RLS showed it the user\'s deals only');
is( $node->safe_psql('postgres', qq{
		SELECT context->'outputs'->'org-wide'->>'who' || ' ' || (context->'outputs'->'org-wide'->'deals')::text
		FROM orchestrator.sequence_jobs WHERE id = '$job'}),
	'postgres ["Globex", "Initech", "Umbrella"]',
	'the service-scope step ran as the definer and saw the whole org');
is( $node->safe_psql('postgres', qq{SELECT string_agg(step_name, ',') FROM orchestrator.service_scope_audit WHERE job_id = '$job'}),
	'org-wide', 'only the service-scope step is in the audit view');

my $job2 = $node->safe_psql('postgres',
	"SELECT job_id FROM orch_submit_event('scan', 'test', '$ORG', '$other', '{}')");
ok(wait_job_status($node, $job2, 'completed'), 'the other user\'s scan completed');
is( $node->safe_psql('postgres', qq{SELECT context->'outputs'->'mine'->'deals' FROM orchestrator.sequence_jobs WHERE id = '$job2'}),
	'["Umbrella"]', 'and saw that user\'s deals only');

# a role that does not exist: the step fails, saying what to do
set_user_role('no_such_role');
my $job3 = submit_job($node, 'scan', '{"n": 3}');
ok(wait_job_status($node, $job3, 'failed'), 'with a missing user_role the step fails');
like( $node->safe_psql('postgres', "SELECT last_error FROM orchestrator.sequence_jobs WHERE id = '$job3'"),
	qr/role "no_such_role" named by orchestrator.user_role does not exist/, 'with a clear error');

$node->stop;
done_testing();
