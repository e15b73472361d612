/* lib/mg-err.c - return codes and error records */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mg-err.h"

int mg_err_set(struct mg_err *err, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return rc;
	err->rc = (enum mg_rc)rc;
	va_start(ap, fmt);
	(void)vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return rc;
}

int mg_err_prefix(struct mg_err *err, const char *fmt, ...)
{
	char prefix[MG_ERR_MSG_MAX];
	char old[MG_ERR_MSG_MAX];
	size_t n;
	va_list ap;

	if (err == NULL)
		return MG_OK;
	va_start(ap, fmt);
	(void)vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);

	memcpy(old, err->msg, sizeof(old));
	old[sizeof(old) - 1] = '\0';
	/* prefix first, then as much of the old message as fits */
	n = strlen(prefix);
	if (n >= sizeof(err->msg))
		n = sizeof(err->msg) - 1;
	memcpy(err->msg, prefix, n);
	err->msg[n] = '\0';
	strncat(err->msg, old, sizeof(err->msg) - 1 - n);
	return err->rc;
}

const char *mg_rc_name(int rc)
{
	switch (rc) {
	case MG_OK:
		return "ok";
	case MG_ENOMEM:
		return "out of memory";
	case MG_EINPUT:
		return "bad input";
	case MG_ETEMP:
		return "temporary failure";
	case MG_EREJECT:
		return "permanent failure";
	case MG_ECONFIG:
		return "configuration error";
	case MG_ESYS:
		return "system error";
	}
	return "unknown error";
}
