/*-------------------------------------------------------------------------
 *
 * fuzz_sql.c
 *	  libFuzzer target: the checks written in SQL and plpgsql, reached
 *	  through libpq on a throwaway server (fuzz/run.sh starts it): endpoint
 *	  definitions (URL checks, header templates, {{secret:NAME}}), secrets,
 *	  sequence definitions (every step field), and event submission
 *	  (payload checks, orchestrator.max_json_depth).
 *
 * Input: one byte choosing what to call, then text fields separated by
 * NUL bytes (a text parameter cannot hold a NUL either), each sent as a
 * parameter, never spliced into SQL:
 *
 *   0  orch_set_secret(F3, F4); orch_define_endpoint(F0, F1, 5000, F2::jsonb);
 *      then the request orchestrator.http_request builds for that endpoint
 *   1  orch_define_sequence(F0, F1::jsonb); if it was accepted, an event
 *      of that type submitted
 *   2  orch_submit_event(F0, 'fuzz', Ada's org, Ada, F1::jsonb, NULL, F2)
 *
 * each in a transaction that is rolled back, so every input meets the same
 * database (fuzz/sql_setup.sql: the examples' endpoints, functions,
 * context sources and sequences, the examples' org and user Ada, two secrets).
 *
 * The oracle: each statement succeeds or fails cleanly, with an SQLSTATE
 * of class 22 (data exception), 23 (integrity constraint), 42 (syntax,
 * undefined object, privilege), 54 (program limit) or 55 (object not in
 * prerequisite state).  Anything else fails the run: an internal error
 * (XX000, which is also every elog(ERROR)), a statement timeout (a hang),
 * any other class, or a lost connection (a crashed backend).  And a
 * request the builder returns never has a line break in its URL or any
 * header, whatever the endpoint and secret APIs accepted.
 *
 * The server is not instrumented, so coverage is the harness's only; for
 * guidance, each distinct kind of answer (the call, its SQLSTATE and its
 * message with quoted values and numbers removed) counts as a feature
 * through libFuzzer's extra counters, so an input that reaches a new
 * check is kept.
 *
 * fuzz/fuzz_sql.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#define NFIELDS 5
#define NCOUNTERS 4096
#define ORG "00000000-0000-0000-0000-00000000000a"
#define USER "00000000-0000-0000-0000-0000000000a1"

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

__attribute__((used, section("__libfuzzer_extra_counters")))
static uint8_t answers[NCOUNTERS];

static PGconn *conn;

static void
fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_sql: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	abort();
}

static void
ignore_notice(void *arg, const char *message)
{
}

/* count the kind of answer: call, SQLSTATE, message without its values */
static void
count_answer(int op, const char *state, const char *msg)
{
	uint32_t	h = 2166136261u ^ (uint32_t) op;
	int			quoted = 0;

	for (const char *p = state; *p; p++)
		h = (h ^ (unsigned char) *p) * 16777619u;
	for (const char *p = msg; *p; p++)
	{
		if (*p == '"')
			quoted = !quoted;
		else if (!quoted && !(*p >= '0' && *p <= '9'))
			h = (h ^ (unsigned char) *p) * 16777619u;
	}
	answers[h % NCOUNTERS]++;
}

static void
command(const char *sql)
{
	PGresult   *r = PQexec(conn, sql);

	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		fail("could not run", PQerrorMessage(conn));
	PQclear(r);
}

/*
 * call runs one statement with text parameters; returns its result when
 * it succeeded, NULL when it failed cleanly (the transaction is then
 * rolled back to the savepoint taken before it).
 */
static PGresult *
call(int op, const char *sql, int nparams, const char *const *params)
{
	PGresult   *r;
	const char *state;
	const char *msg;

	command("SAVEPOINT s");
	r = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK)
	{
		count_answer(op, "00000", sql);
		command("RELEASE SAVEPOINT s");
		return r;
	}
	if (PQstatus(conn) != CONNECTION_OK)
		fail("lost the connection (did the backend crash?)", PQerrorMessage(conn));
	state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	if (state == NULL || msg == NULL)
		fail("an error without SQLSTATE or message", PQerrorMessage(conn));
	if (strncmp(state, "22", 2) != 0 && strncmp(state, "23", 2) != 0 && strncmp(state, "42", 2) != 0 &&
		strncmp(state, "54", 2) != 0 && strncmp(state, "55", 2) != 0)
	{
		fprintf(stderr, "fuzz_sql: %s\n", sql);
		for (int i = 0; i < nparams; i++)
			fprintf(stderr, "fuzz_sql: $%d = %s\n", i + 1, params[i] ? params[i] : "NULL");
		fail("an error of an unexpected class", PQresultErrorMessage(r));
	}
	count_answer(op, state, msg);
	PQclear(r);
	command("ROLLBACK TO SAVEPOINT s");
	return NULL;
}

static void
endpoint(const char *const *f)
{
	const char *secret[2] = {f[3], f[4]};
	const char *define[3] = {f[0], f[1], f[2]};
	PGresult   *r;

	PQclear(call(0, "SELECT orch_set_secret($1, $2)", 2, secret));
	r = call(0, "SELECT orch_define_endpoint($1, $2, 5000, $3::jsonb)", 3, define);
	if (r == NULL)
		return;
	PQclear(r);
	r = call(0, "SELECT count(*) FILTER (WHERE v ~ '[\\r\\n]')"
			 " FROM orchestrator.http_request(gen_random_uuid(), $1, 'fuzz', NULL, '{}') q,"
			 " unnest(q.headers || q.url) v", 1, f);
	if (r != NULL && strcmp(PQgetvalue(r, 0, 0), "0") != 0)
		fail("the request built for an accepted endpoint has a line break", f[0]);
	PQclear(r);
}

static void
sequence(const char *const *f)
{
	PGresult   *r = call(1, "SELECT orch_define_sequence($1, $2::jsonb)", 2, f);

	if (r == NULL)
		return;
	PQclear(r);
	PQclear(call(1, "SELECT outcome FROM orch_submit_event($1, 'fuzz', '" ORG "', '" USER "', '{}')", 1, f));
}

static void
submit(const char *const *f)
{
	const char *params[3] = {f[0], f[1], f[2][0] ? f[2] : NULL};

	PQclear(call(2, "SELECT outcome FROM orch_submit_event($1, 'fuzz', '" ORG "', '" USER "', $2::jsonb, NULL, $3)",
				 3, params));
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *conninfo = getenv("ORCH_FUZZ_CONNINFO");

	if (conninfo == NULL)
		fail("set ORCH_FUZZ_CONNINFO to the throwaway server's connection string", NULL);
	conn = PQconnectdb(conninfo);
	if (PQstatus(conn) != CONNECTION_OK)
		fail("could not connect", PQerrorMessage(conn));
	PQsetNoticeProcessor(conn, ignore_notice, NULL);
	command("SET statement_timeout = '10s'");
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *buf;
	const char *f[NFIELDS];
	char	   *p;
	int			op;

	if (size < 1)
		return 0;
	op = data[0] % 3;
	buf = malloc(size + 1);
	memcpy(buf, data + 1, size - 1);
	buf[size - 1] = '\0';
	buf[size] = '\0';
	p = buf;
	for (int i = 0; i < NFIELDS; i++)
	{
		f[i] = p;
		if (p < buf + size - 1)
			p += strlen(p) + 1;
	}

	command("BEGIN");
	if (op == 0)
		endpoint(f);
	else if (op == 1)
		sequence(f);
	else
		submit(f);
	command("ROLLBACK");
	free(buf);
	return 0;
}
