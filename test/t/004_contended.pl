# A due job that another transaction holds does not make idle workers spin:
# a step that outlives its lease keeps its row locked, so the other worker
# can neither reclaim nor claim it, and must wait (woken at most once a
# second to look again) instead of looping on an expiry in the past.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/..";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OrchTest;

my $node = start_node('contended', workers => 2, lease_duration => '1s');
install_extension($node, user => '00000000-0000-0000-0000-0000000000a1', display_name => undef);
$node->safe_psql('postgres', q{
	CREATE FUNCTION blocked(s jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN PERFORM pg_advisory_xact_lock(77); RETURN '{}'; END $$;
	SELECT orch_define_sequence('slow', '[{"name": "wait", "kind": "sql", "function": "blocked"}]');
});
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'orchestrator worker' AND wait_event_type = 'Extension'}),
	'both workers idle');

my $holder = $node->background_psql('postgres');
$holder->query_safe('SELECT pg_advisory_lock(77)');
my $job = $node->safe_psql('postgres', q{SELECT job_id FROM orch_submit_event('slow', 'test',
	'00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', '{}')});
ok($node->poll_query_until('postgres', qq{
	SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'orchestrator worker'
	               AND wait_event_type = 'Lock' AND wait_event = 'advisory')
	   AND (SELECT lease_expires_at < now() FROM orchestrator.sequence_jobs WHERE id = '$job')}),
	'one worker is stuck in the step past its lease');

my $idle_pid = $node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity
	WHERE backend_type = 'orchestrator worker' AND wait_event_type IS DISTINCT FROM 'Lock'});
like($idle_pid, qr/^\d+$/, 'found the other worker');

sub switches
{
	my $status = slurp_file("/proc/$idle_pid/status");
	my ($v) = $status =~ /^voluntary_ctxt_switches:\s+(\d+)/m;
	return $v;
}
# utime + stime in clock ticks (1/100 s on Linux)
sub cpu_ticks
{
	my @f = split / /, slurp_file("/proc/$idle_pid/stat");
	return $f[13] + $f[14];
}
my $before = switches();
my $cpu_before = cpu_ticks();
# a state to wait for: the lease has been over for three seconds
ok($node->poll_query_until('postgres',
	qq{SELECT lease_expires_at < clock_timestamp() - interval '3 seconds' FROM orchestrator.sequence_jobs WHERE id = '$job'}),
	'three seconds past the lease');
my $woken = switches() - $before;
my $cpu = cpu_ticks() - $cpu_before;
cmp_ok($cpu, '<', 50, "the other worker used almost no CPU meanwhile ($cpu ticks; a spin would burn about 300)");
cmp_ok($woken, '<', 30, "the other worker slept meanwhile (woken $woken times, about once a second)");
is($node->safe_psql('postgres', qq{SELECT count(*) FROM orchestrator.step_history WHERE job_id = '$job'}),
	'0', 'nobody reclaimed the job from the worker still running it');

$holder->query_safe('SELECT pg_advisory_unlock(77)');
$holder->quit;
ok($node->poll_query_until('postgres', qq{SELECT status FROM orchestrator.sequence_jobs WHERE id = '$job'}, 'completed'),
	'the step completes once the lock is released');
is($node->safe_psql('postgres', qq{SELECT string_agg(outcome, ',') FROM orchestrator.step_history WHERE job_id = '$job'}),
	'succeeded', 'run once, by its own worker');
$node->stop;
done_testing();
