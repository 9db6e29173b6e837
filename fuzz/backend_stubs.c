/*-------------------------------------------------------------------------
 *
 * backend_stubs.c
 *	  Link stand-ins for the backend symbols that src/redact.c refers to
 *	  outside orch_redact, so fuzz_redact can link redact.c unchanged.
 *
 * orch_redact itself needs only palloc, pfree and StringInfo, which the
 * fuzz targets take from PostgreSQL's frontend libpgcommon (malloc-based),
 * and pg_strncasecmp from libpgport.  The SQL wrapper orchestrator.redact
 * and the log hook in the same file refer to a few backend functions and
 * one variable; the fuzzer never calls that code, so each function here
 * aborts if it is ever reached.
 *
 * fuzz/backend_stubs.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/elog.h"

#include <stdio.h>
#include <stdlib.h>

emit_log_hook_type emit_log_hook = NULL;

static void
unreachable(const char *what)
{
	fprintf(stderr, "fuzz: the backend function %s was called outside a server\n", what);
	abort();
}

bool
in_error_recursion_trouble(void)
{
	unreachable("in_error_recursion_trouble");
	return false;
}

text *
cstring_to_text(const char *s)
{
	unreachable("cstring_to_text");
	return NULL;
}

char *
text_to_cstring(const text *t)
{
	unreachable("text_to_cstring");
	return NULL;
}

struct varlena *
pg_detoast_datum_packed(struct varlena *datum)
{
	unreachable("pg_detoast_datum_packed");
	return NULL;
}
