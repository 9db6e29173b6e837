
# Copyright (c) orchestrator authors
#
# A missing orchestrator.database is no restart loop: each worker fails to
# connect once (the server's FATAL), warns once and then waits for the
# database, connected to none, without logging again; once the database
# exists the workers connect and run jobs there.  A database without the
# extension gets one warning per worker, not one per claim; one that
# refuses connections is waited for in the same way.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/..";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OrchTest;

my $node = start_node('missing_db', database => 'later', workers => 2);

$node->wait_for_log(qr/orchestrator worker 1 waits for database "later", which does not exist/);
$node->wait_for_log(qr/orchestrator worker 2 waits for database "later", which does not exist/);

# both waiting workers have lived 6 s: without the wait, each would have
# failed and been restarted about six times by now
ok( $node->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'orchestrator worker'"
		  . " AND datname IS NULL AND now() - backend_start > interval '6 seconds'", '2'),
	'the two workers wait, connected to no database');
my $log = slurp_file($node->logfile);
my @fatal = ($log =~ /FATAL:  database "later" does not exist/g);
is(scalar @fatal, 2, 'one FATAL per worker, not one a second');
my @warned = ($log =~ /waits for database "later"/g);
is(scalar @warned, 2, 'one warning per worker');
like($log, qr/HINT:  Create the database and the extension in it, or set orchestrator.database/,
	'the warning says what to do');

# the database appears, without the extension: the workers connect and say
# once that there is nothing to run
$node->safe_psql('postgres', 'CREATE DATABASE later');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'orchestrator worker' AND datname = 'later'", '2'),
	'once the database exists, both workers connect to it');
$node->wait_for_log(qr/orchestrator worker 1 finds no extension "orchestrator" in database "later"/);
$node->wait_for_log(qr/orchestrator worker 2 finds no extension "orchestrator" in database "later"/);

# with the extension, jobs run there; the warning was not repeated meanwhile
install_extension($node, db => 'later');
$node->safe_psql('later', q{
CREATE FUNCTION public.ok(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"ok": true}'::jsonb $$;
SELECT orch_define_sequence('later_ok', '[{"name": "ok", "kind": "sql", "function": "ok"}]');
});
my $job = $node->safe_psql('later',
	"SELECT job_id FROM orch_submit_event('later_ok', 'test', '$ORG', '$USER', '{}')");
ok( $node->poll_query_until('later',
		"SELECT status FROM orchestrator.sequence_jobs WHERE id = '$job'", 'completed'),
	'a job submitted there runs');
$log = slurp_file($node->logfile);
@fatal = ($log =~ /FATAL:  database "later" does not exist/g);
is(scalar @fatal, 2, 'still only the first two FATALs');
my @noext = ($log =~ /finds no extension "orchestrator"/g);
is(scalar @noext, 2, 'and one "no extension" warning per worker');

# a database that exists but refuses connections is no loop either: the
# workers, stopped and started again, fail once each and wait
$node->safe_psql('postgres', 'ALTER DATABASE later ALLOW_CONNECTIONS false');
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres',
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'orchestrator worker'");
ok( $node->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'orchestrator worker'"
		  . " AND datname IS NULL AND now() - backend_start > interval '6 seconds'", '2'),
	'with connections refused, the two workers wait, connected to no database');
$log = slurp_file($node->logfile, $log_offset);
@fatal = ($log =~ /FATAL:  database "later" is not currently accepting connections/g);
is(scalar @fatal, 2, 'one FATAL per worker, not one every two seconds');
$node->safe_psql('postgres', 'ALTER DATABASE later ALLOW_CONNECTIONS true');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'orchestrator worker' AND datname = 'later'", '2'),
	'once it accepts connections, both workers connect');

$node->stop;
done_testing();
