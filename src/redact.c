/*-------------------------------------------------------------------------
 *
 * redact.c
 *	  Masking email addresses and bearer tokens: in stored errors and in
 *	  everything a worker writes to the server log.
 *
 * orch_redact replaces each email address (local@domain.tld) with
 * "[email]" and the word after "Bearer", "bearer", "Token" or "token" and
 * whitespace with "[redacted]".  It is the one implementation: SQL calls it
 * as orchestrator.redact (last_error, step_history.error, context errors),
 * and workers install it as an emit_log_hook, so a step function's RAISE, a
 * failed statement or the engine's own messages reach the log masked.
 *
 * src/redact.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/elog.h"

#include "orchestrator.h"

PG_FUNCTION_INFO_V1(orch_redact_sql);

static emit_log_hook_type prev_emit_log_hook = NULL;

static bool
local_char(char c)
{
	return isalnum((unsigned char) c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}

static bool
domain_char(char c)
{
	return isalnum((unsigned char) c) || c == '.' || c == '-';
}

static bool
token_char(char c)
{
	return isalnum((unsigned char) c) || strchr("._~+/=-", c) != NULL;
}

/*
 * email_end: text[at] is '@'.  Returns the index just past the address
 * whose domain ends in "." and two or more letters, or -1.
 */
static int
email_end(const char *text, int at)
{
	int			end = at + 1;
	int			best = -1;

	while (text[end] != '\0' && domain_char(text[end]))
		end++;
	/* the last "." in the domain followed by 2+ letters ends the address */
	for (int dot = end - 1; dot > at + 1; dot--)
	{
		int			letters = 0;

		if (text[dot] != '.')
			continue;
		while (dot + 1 + letters < end && isalpha((unsigned char) text[dot + 1 + letters]))
			letters++;
		if (letters >= 2)
		{
			best = dot + 1 + letters;
			break;
		}
	}
	return best;
}

/*
 * orch_redact returns a palloc'd copy of text with emails and tokens masked.
 */
char *
orch_redact(const char *text)
{
	StringInfoData pass1;
	StringInfoData out;
	int			len = strlen(text);
	int			i = 0;

	/* emails */
	initStringInfo(&pass1);
	while (i < len)
	{
		const char *at = strchr(text + i, '@');
		int			a,
					start,
					end;

		if (at == NULL)
		{
			appendStringInfoString(&pass1, text + i);
			break;
		}
		a = at - text;
		start = a;
		while (start > i && local_char(text[start - 1]))
			start--;
		end = (start < a) ? email_end(text, a) : -1;
		if (end < 0)
		{
			appendBinaryStringInfo(&pass1, text + i, a + 1 - i);
			i = a + 1;
			continue;
		}
		appendBinaryStringInfo(&pass1, text + i, start - i);
		appendStringInfoString(&pass1, "[email]");
		i = end;
	}

	/* tokens */
	initStringInfo(&out);
	i = 0;
	while (i < pass1.len)
	{
		const char *s = pass1.data + i;
		int			word = 0;

		if (strncmp(s, "Bearer", 6) == 0 || strncmp(s, "bearer", 6) == 0)
			word = 6;
		else if (strncmp(s, "Token", 5) == 0 || strncmp(s, "token", 5) == 0)
			word = 5;
		if (word > 0)
		{
			int			j = i + word;
			int			k;

			while (j < pass1.len && isspace((unsigned char) pass1.data[j]))
				j++;
			k = j;
			while (k < pass1.len && token_char(pass1.data[k]))
				k++;
			if (j > i + word && k > j)
			{
				appendBinaryStringInfo(&out, s, word);
				appendStringInfoString(&out, " [redacted]");
				i = k;
				continue;
			}
		}
		appendStringInfoChar(&out, pass1.data[i]);
		i++;
	}
	pfree(pass1.data);
	return out.data;
}

/* orchestrator.redact(text) */
Datum
orch_redact_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(orch_redact(text_to_cstring(PG_GETARG_TEXT_PP(0)))));
}

static void
redact_field(char **field)
{
	if (*field != NULL)
		*field = orch_redact(*field);
}

/*
 * redact_log masks every text field of a report before it is emitted (runs
 * in ErrorContext, which holds the report).
 */
static void
redact_log(ErrorData *edata)
{
	redact_field(&edata->message);
	redact_field(&edata->detail);
	redact_field(&edata->detail_log);
	redact_field(&edata->hint);
	redact_field(&edata->context);
	redact_field(&edata->internalquery);
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/*
 * orch_redact_log_init makes this process redact what it logs (workers).
 */
void
orch_redact_log_init(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = redact_log;
}
