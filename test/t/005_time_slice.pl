# Time slices (the seed's 150 s edge timeout as fairness): a job that has run
# for orchestrator.max_slice is checkpointed between steps and queued again
# as an orchestrator:continuation; it resumes at the right step, every step
# runs once, and other jobs run in between.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/..";
use OrchTest;
use PostgreSQL::Test::Utils;
use Test::More;

my ($org, $user) = ($ORG, $USER);
my $node = start_node('slice', workers => 1, conf => "orchestrator.max_slice = '200ms'\norchestrator.batch_size = 1\n");
install_extension($node);
ok(wait_for_workers($node, 1), 'one orchestrator worker is running');

# each step works for 120 ms of wall time (a busy loop, not a wait)
$node->safe_psql('postgres', q{
	CREATE TABLE public.ran (job_id uuid, step text, at timestamptz DEFAULT clock_timestamp());
	CREATE FUNCTION public.work(s jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	DECLARE t0 timestamptz := clock_timestamp();
	BEGIN
		WHILE clock_timestamp() < t0 + interval '120 milliseconds' LOOP
			NULL;
		END LOOP;
		INSERT INTO public.ran (job_id, step) VALUES ((s->'execution_metadata'->>'sequence_job_id')::uuid, s->>'current_step');
		RETURN jsonb_build_object('step', s->'current_step');
	END $$;
	SELECT orch_define_sequence('long', '[
		{"name": "s1", "kind": "sql", "function": "work"}, {"name": "s2", "kind": "sql", "function": "work"},
		{"name": "s3", "kind": "sql", "function": "work"}, {"name": "s4", "kind": "sql", "function": "work"}]');
	SELECT orch_define_sequence('short', '[{"name": "s1", "kind": "sql", "function": "work"}]');
});

# the long job and two short ones in one transaction; one job per claim, so
# after its slice the long job queues behind the short ones
my ($long, $short1, $short2) = split /\n/, $node->safe_psql('postgres', qq{
	SELECT (orch_submit_event('long', 'test', '$org', '$user', '{"n": 1}')).job_id
	UNION ALL SELECT (orch_submit_event('short', 'test', '$org', '$user', '{"n": 2}')).job_id
	UNION ALL SELECT (orch_submit_event('short', 'test', '$org', '$user', '{"n": 3}')).job_id});
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = 3 FROM orchestrator.sequence_jobs WHERE status = 'completed'
	AND id IN ('$long', '$short1', '$short2')}), 'all three jobs complete');

is($node->safe_psql('postgres', qq{
	SELECT string_agg(step_name || ':' || outcome, ',' ORDER BY id) FROM orchestrator.step_history
	WHERE job_id = '$long' AND kind = 'sql'}),
	's1:succeeded,s2:succeeded,s3:succeeded,s4:succeeded', 'every step of the long job ran once, in order');
is($node->safe_psql('postgres', qq{SELECT count(*) FROM public.ran WHERE job_id = '$long'}), '4',
	'and its work happened once per step');
my $continuations = $node->safe_psql('postgres', qq{
	SELECT count(*) FROM orchestrator.step_history WHERE job_id = '$long' AND outcome = 'continuation'});
cmp_ok($continuations, '>=', 1, "the long job was checkpointed ($continuations continuation(s))");
like($node->safe_psql('postgres', qq{
	SELECT error FROM orchestrator.step_history WHERE job_id = '$long' AND outcome = 'continuation' ORDER BY id LIMIT 1}),
	qr/^orchestrator:continuation: time slice of 200 ms used; re-queued at step [234]$/, 'the history says why');
cmp_ok($node->safe_psql('postgres', qq{SELECT fencing_token FROM orchestrator.sequence_jobs WHERE id = '$long'}),
	'>', 1, 'it was claimed again for each continuation');
is($node->safe_psql('postgres', qq{
	SELECT bool_and(s.finished_at < l.finished_at) FROM orchestrator.sequence_jobs s, orchestrator.sequence_jobs l
	WHERE s.id IN ('$short1', '$short2') AND l.id = '$long'}),
	't', 'the short jobs ran in between and finished first');
is($node->safe_psql('postgres', qq{
	SELECT context->'execution_metadata'->>'steps_completed' || '/' || (context->>'current_step')
	FROM orchestrator.sequence_jobs WHERE id = '$long'}), '4/4', 'its state is whole across the slices');

$node->stop;
done_testing();
