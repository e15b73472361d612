/* lib/mg-err.h - return codes and the one-line error record every fallible function fills */
#ifndef MG_ERR_H
#define MG_ERR_H

/*
 * Every fallible function returns 0 (MG_OK) or one of these negative codes.
 * The code tells the caller what to do with the group it was working on.
 */
enum mg_rc {
	MG_OK = 0,
	MG_ENOMEM = -1,	 /* out of memory */
	MG_EINPUT = -2,	 /* bad data: fail this group, go on with the others */
	MG_ETEMP = -3,	 /* transient: SMTP 4xx, lost connection; retry later */
	MG_EREJECT = -4, /* permanent refusal by a peer: SMTP 5xx */
	MG_ECONFIG = -5, /* invalid configuration */
	MG_ESYS = -6,	 /* a system call failed; err->sys_errno says why */
};

#define MG_ERR_MSG_MAX 512

struct mg_err {
	enum mg_rc rc;
	int sys_errno;
	char msg[MG_ERR_MSG_MAX];
};

/*
 * Fill in *err (which may be NULL) and return rc, so that callers can write
 * "return mg_err_set(err, MG_EINPUT, ...);".  The message is one line: it
 * says what is wrong and where, without a final full stop.  Never logs.
 * Pure.
 */
int mg_err_set(struct mg_err *err, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Like mg_err_set(), but prefix the message already in err with a new
 * context ("template 'x.txt': " + old message).  err may be NULL.  Pure.
 */
int mg_err_prefix(struct mg_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A short lower-case word for rc ("input", "temporary", ...).  Pure. */
const char *mg_rc_name(int rc);

#endif /* MG_ERR_H */
