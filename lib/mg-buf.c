/* lib/mg-buf.c - growable text buffer with a mandatory size cap */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg-buf.h"
#include "mg-err.h"
#include "mg-alloc.h"

static int buf_grow(struct mg_buf *b, size_t need)
{
	size_t want;
	char *p;

	if (need <= b->alloc)
		return MG_OK;
	want = b->alloc < 64 ? 64 : b->alloc;
	while (want < need)
		want = want > ((size_t)-1) / 2 ? need : want * 2;
	p = mg_realloc(b->data, want);
	if (p == NULL)
		return MG_ENOMEM;
	b->data = p;
	b->alloc = want;
	return MG_OK;
}

int mg_buf_add(struct mg_buf *b, const void *mem, size_t n)
{
	int r;

	if (n > b->max - b->len)
		return MG_EINPUT;
	r = buf_grow(b, b->len + n + 1);
	if (r < 0)
		return r;
	if (n > 0)
		memcpy(b->data + b->len, mem, n);
	b->len += n;
	b->data[b->len] = '\0';
	return MG_OK;
}

int mg_buf_adds(struct mg_buf *b, const char *s)
{
	return mg_buf_add(b, s, strlen(s));
}

int mg_buf_addc(struct mg_buf *b, char c)
{
	return mg_buf_add(b, &c, 1);
}

int mg_buf_addf(struct mg_buf *b, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	int n, r;
	char *big;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return MG_EINPUT;
	if ((size_t)n < sizeof(small))
		return mg_buf_add(b, small, (size_t)n);
	big = mg_malloc((size_t)n + 1);
	if (big == NULL)
		return MG_ENOMEM;
	va_start(ap, fmt);
	(void)vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	r = mg_buf_add(b, big, (size_t)n);
	free(big);
	return r;
}

const char *mg_buf_str(const struct mg_buf *b)
{
	return b->data != NULL ? b->data : "";
}

void mg_buf_truncate(struct mg_buf *b, size_t len)
{
	if (len >= b->len)
		return;
	b->len = len;
	b->data[len] = '\0';
}

void mg_buf_reset(struct mg_buf *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

void mg_buf_release(struct mg_buf *b)
{
	if (b == NULL)
		return;
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
}

char *mg_buf_detach(struct mg_buf *b, size_t *ret_len)
{
	char *p;

	if (b->data == NULL) {
		p = mg_malloc(1);
		if (p == NULL)
			return NULL;
		p[0] = '\0';
		if (ret_len != NULL)
			*ret_len = 0;
		return p;
	}
	p = b->data;
	if (ret_len != NULL)
		*ret_len = b->len;
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
	return p;
}
