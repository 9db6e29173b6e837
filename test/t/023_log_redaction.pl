
# Copyright (c) orchestrator authors
#
# Emails and bearer tokens are masked in what a worker writes to the server
# log (its emit_log_hook) and in stored errors: a step function that RAISEs
# a WARNING naming a contact's email and a token, then fails with both in
# its error, leaves neither in the log nor in the job's tables, while the
# masked lines are there to read.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/..";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OrchTest;

# unique to this run, so a match can only come from this run
my $tag = sprintf('%08x%d', int(rand(2**32)), $$);
my $email = "grace.$tag\@globex.example";
my $token = "tok-$tag";

my $node = start_node('log_redaction', workers => 1, conf => "log_statement = 'none'\n");
install_extension($node);

# the values are built inside the function, so no statement text carries them
$node->safe_psql('postgres', qq{
CREATE FUNCTION public.leaky(state jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE
	who text := 'grace.' || (state->'event'->'payload'->>'tag') || '\@globex.example';
	tok text := 'tok-' || (state->'event'->'payload'->>'tag');
BEGIN
	RAISE WARNING 'mailing % with Bearer %', who, tok USING DETAIL = 'contact: ' || who;
	RAISE EXCEPTION 'send to % failed (token % rejected)', who, tok;
END
\$\$;
SELECT orch_define_sequence('leak', '[{"name": "leaky", "kind": "sql", "function": "leaky"}]');
});

my $log_offset = -s $node->logfile;
my $job = submit_job($node, 'leak', qq({"tag": "$tag"}));
ok(wait_job_status($node, $job, 'failed'), 'the step ran and failed');

my $log = slurp_file($node->logfile, $log_offset);
like($log, qr/WARNING:  mailing \[email\] with Bearer \[redacted\]/, 'the WARNING is in the log, masked');
like($log, qr/DETAIL:  contact: \[email\]/, '... and so is its DETAIL');
unlike($log, qr/\Q$tag\E/, 'neither the email nor the token is anywhere in the log');

my $stored = $node->safe_psql('postgres', qq{
	SELECT string_agg(t, ' | ') FROM (
		SELECT last_error AS t FROM orchestrator.sequence_jobs WHERE id = '$job'
		UNION ALL SELECT error FROM orchestrator.step_history WHERE job_id = '$job') s});
like($stored, qr/send to \[email\] failed \(token \[redacted\] rejected\)/, 'the stored error is masked the same way');
unlike($stored, qr/\Q$tag\E/, 'and carries neither value');

# a webhook row the engine cannot take: the trigger's WARNING (in the
# inserting backend, which has no hook of ours) and the skip it logs carry
# the reason masked; the row is kept in event_log as it came
my $rev = reverse($tag);
$node->safe_psql('postgres', qq{
CREATE TABLE public.hooks (org_id text, user_id text);
CREATE TRIGGER hooks_enqueue AFTER INSERT ON public.hooks
	FOR EACH ROW EXECUTE FUNCTION orch_enqueue_trigger('leak', 'webhook:test');
});
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', qq{INSERT INTO public.hooks SELECT '$OrchTest::ORG', 'grace.' || reverse('$rev') || '\@globex.example'});
$log = slurp_file($node->logfile, $log_offset);
like($log, qr/WARNING:  orchestrator skipped a leak row of public.hooks: invalid input syntax for type uuid: "\[email\]"/,
	"the trigger's WARNING is in the log, masked");
unlike($log, qr/\Q$tag\E/, '... and carries no email');
is($node->safe_psql('postgres', qq{SELECT reason || ' | ' || (payload->>'user_id' = 'grace.' || reverse('$rev') || '\@globex.example')
	FROM orchestrator.event_log WHERE event_source = 'webhook:test'}),
	'invalid_event: invalid input syntax for type uuid: "[email]" | true', 'the skip is logged masked, the row kept whole');

# the one implementation, through SQL
my @cases = (
	[ 'a.b+c@x-y.example.org, x@y, @no.pe, see me@host.io.', '[email], x@y, @no.pe, see [email].', 'addresses, and nothing that only looks like one' ],
	[ 'Bearer abc.DEF_1 token  Z9 BEARER q1 basic dXNlcjpw', 'Bearer [redacted] token [redacted] BEARER [redacted] basic [redacted]', 'the credential after a scheme word, in any case' ],
	[ 'Authorization: Bearer abc', 'Authorization: Bearer [redacted]', 'an Authorization header keeps its scheme' ],
	[ 'authorization=basic x and token abc', 'authorization=basic [redacted] and token abc', 'a short credential after a key; a short word after a scheme word stays' ],
	[ 'token= basic Bearer Zq9Zq9Zq9', 'token= [redacted] Bearer [redacted]', 'a scheme word after a key does not shield the credential after it' ],
	[ '{"token": "s3cr3t", "access_token":"a1", "api_key" : \'k9\'} password=hunter2&user=ann', '{"token": "[redacted]", "access_token":"[redacted]", "api_key" : \'[redacted]\'} password=[redacted]&user=ann', 'values of secret-bearing keys' ],
	[ 'slack said xoxb-1234-abcd and jwt eyJhbGciOi.eyJzdWIiOi.sig_1 ok', 'slack said [redacted] and jwt [redacted] ok', 'Slack tokens and JWTs' ],
	[ 'tokens: 3, the bearer of bad news, secretary, token', 'tokens: 3, the bearer of bad news, secretary, token', 'ordinary words are left alone' ],
);
for my $c (@cases)
{
	my ($in, $want, $what) = @$c;
	(my $lit = $in) =~ s/'/''/g;
	is($node->safe_psql('postgres', "SELECT orchestrator.redact('$lit')"), $want, "orchestrator.redact masks $what");
}

$node->stop;
done_testing();
