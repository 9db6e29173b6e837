
# Copyright (c) orchestrator authors
#
# examples/monitoring/postgres_exporter.yaml: every query in it runs, as a
# member of orchestrator_admin, against a server whose worker has run jobs,
# and returns exactly the columns its "metrics" list names, in order; the
# step metrics have rows once steps have run.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/..";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OrchTest;

my $file = "$FindBin::Bin/../../examples/monitoring/postgres_exporter.yaml";
open(my $fh, '<', $file) or die "could not open $file: $!";

# the file's own simple shape: "name:", "  query: \"...\"", "    - column:"
my (@order, %query, %columns);
my $current;
while (my $line = <$fh>)
{
	if ($line =~ /^(\w+):\s*$/)
	{
		$current = $1;
		push @order, $current;
	}
	elsif (defined $current && $line =~ /^  query: "(.*)"\s*$/)
	{
		$query{$current} = $1;
	}
	elsif (defined $current && $line =~ /^    - (\w+):\s*$/)
	{
		push @{ $columns{$current} }, $1;
	}
}
close $fh;
cmp_ok(scalar(@order), '>=', 7, 'the queries file names its metrics');

my $node = start_node('metrics', workers => 1);
install_extension($node);
$node->safe_psql(
	'postgres', qq{
CREATE ROLE scraper LOGIN IN ROLE orchestrator_admin;
CREATE FUNCTION public.m_noop(s jsonb) RETURNS jsonb LANGUAGE sql AS \$\$ SELECT '{}'::jsonb \$\$;
SELECT orch_define_sequence('m_run', '[{"name": "one", "kind": "sql", "function": "m_noop"}]');
SELECT count(*) FROM generate_series(1, 5) n,
	LATERAL orch_submit_event('m_run', 'test', '$OrchTest::ORG', '$OrchTest::USER', jsonb_build_object('n', n));
});
ok( $node->poll_query_until(
		'postgres', "SELECT count(*) = 5 FROM orchestrator.sequence_jobs WHERE event_type = 'm_run' AND status = 'completed'"),
	'five jobs ran');

for my $name (@order)
{
	ok(defined $query{$name} && @{ $columns{$name} // [] } > 0, "$name has a query and metrics");
	(my $q = $query{$name}) =~ s/''/'/g;
	my $cols = $node->safe_psql(
		'postgres', qq{
SET ROLE scraper;
CREATE TEMP VIEW scraped AS $q;
SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'scraped'::regclass AND attnum > 0;
});
	is($cols, join(',', @{ $columns{$name} }), "$name: as orchestrator_admin it returns the columns it lists");
}

# rows where there must be some
(my $durations = $query{orchestrator_step_duration}) =~ s/''/'/g;
is( $node->safe_psql('postgres', "SELECT count(*) FROM ($durations) d WHERE event_type = 'm_run' AND step = 'one'"),
	'3', 'one duration row per quantile for the step that ran');
(my $rate = $query{orchestrator_steps}) =~ s/''/'/g;
is($node->safe_psql('postgres', "SELECT per_second > 0 FROM ($rate) r"), 't', 'steps per second counts them');
(my $http = $query{orchestrator_http}) =~ s/''/'/g;
is($node->safe_psql('postgres', "SELECT count(*) || ':' || sum(in_flight) FROM ($http) h"), '1:0',
	'one worker, no request in flight');

$node->stop;
done_testing();
