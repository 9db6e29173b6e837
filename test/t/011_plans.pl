# Plans that stay good from an empty, analyzed table on: after VACUUM
# ANALYZE of the engine's empty tables (what autovacuum does on a fresh
# install), submitting, claiming and running jobs never scans
# sequence_jobs, event_log or step_history sequentially, however many
# times the kept plans run; they look rows up by index.  And running a
# batch leaves no MultiXact on the job rows (a row locked in a job's
# subtransaction and updated by the batch's transaction would carry one,
# and every later read of it would look its members up).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/..";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OrchTest;

my $node = start_node('plans', workers => 0);
install_extension($node);
$node->safe_psql('postgres', q{
	CREATE FUNCTION noop(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
	SELECT orch_define_sequence('two', '[{"name": "a", "kind": "sql", "function": "noop"},
		{"name": "b", "kind": "sql", "function": "noop"}]');
	VACUUM ANALYZE orchestrator.sequence_jobs, orchestrator.event_log, orchestrator.step_history;
});
is($node->safe_psql('postgres', q{SELECT sum(reltuples)::int FROM pg_class
	WHERE oid IN ('orchestrator.sequence_jobs'::regclass, 'orchestrator.event_log'::regclass, 'orchestrator.step_history'::regclass)}),
	'0', 'the tables are empty and analyzed');

my $scans = q{SELECT string_agg(relname || '=' || seq_scan, ' ' ORDER BY relname) FROM pg_stat_user_tables
	WHERE schemaname = 'orchestrator' AND relname IN ('sequence_jobs', 'event_log', 'step_history')};
my $before = $node->safe_psql('postgres', $scans);
my $dedupe_read = q{SELECT idx_tup_read FROM pg_stat_user_indexes WHERE indexrelname = 'event_log_dedupe'};
my $dedupe_before = $node->safe_psql('postgres', $dedupe_read);

# one session: 300 submits, one statement each (the kept plans go generic
# after five runs), a duplicate of each, then claims and runs in batches of 20
my $script = '';
for my $i (1 .. 300)
{
	$script .= "SELECT outcome FROM orch_submit_event('two', 'test', '$ORG', '$USER', '{\"i\": $i}');\n";
}
for my $i (1 .. 20)
{
	$script .= "SELECT outcome FROM orch_submit_event('two', 'test', '$ORG', '$USER', '{\"i\": $i}');\n";
}
for (1 .. 16)
{
	$script .= "SELECT orchestrator.run_claimed_jobs(array_agg(c.job_id), array_agg(c.fencing_token)) FROM orchestrator.claim_jobs(20) c;\n";
}
$script .= "SELECT pg_stat_force_next_flush();\n";
$node->safe_psql('postgres', $script);

is($node->safe_psql('postgres', $scans), $before,
	'no sequential scan of sequence_jobs, event_log or step_history');
is($node->safe_psql('postgres', q{SELECT status || ' ' || count(*) FROM orchestrator.sequence_jobs GROUP BY status}),
	'completed 300', 'every job ran');
is($node->safe_psql('postgres', q{SELECT count(*) FROM orchestrator.event_log WHERE outcome = 'duplicate'}),
	'20', 'the repeats were found as duplicates');
$node->safe_psql('postgres', 'CREATE EXTENSION pageinspect');
is($node->safe_psql('postgres', q{SELECT count(*) FROM generate_series(0, pg_relation_size('orchestrator.sequence_jobs') / 8192 - 1) b,
	heap_page_items(get_raw_page('orchestrator.sequence_jobs', b::int)) WHERE t_infomask & 4096 <> 0}),
	'0', 'no job row version has a MultiXact as its xmax');
# each dedupe lookup reads the entries of its own org, bucket and hash,
# not every event of the org: 320 lookups among up to 320 events read
# about 20 entries (the duplicates), not tens of thousands
cmp_ok($node->safe_psql('postgres', $dedupe_read) - $dedupe_before, '<=', 40,
	'the dedupe lookups read only matching index entries');
cmp_ok($node->safe_psql('postgres', q{SELECT sum(idx_scan) FROM pg_stat_user_tables
	WHERE schemaname = 'orchestrator' AND relname IN ('sequence_jobs', 'event_log')}), '>', 600,
	'their rows were found through indexes');

$node->stop;
done_testing();
