#include "net/dns-tcp.h"

#include <string.h>

size_t
lms_dns_tcp_need(const struct lms_dns_tcp_conn *c)
{
	if (c->in_len < 2)
		return 2 - c->in_len;
	size_t whole = 2 + ((size_t)c->in[0] << 8 | c->in[1]);
	return whole - c->in_len;
}

const uint8_t *
lms_dns_tcp_message(const struct lms_dns_tcp_conn *c, size_t *len)
{
	if (c->in_len < 2 || lms_dns_tcp_need(c) != 0)
		return NULL;
	*len = c->in_len - 2;
	return c->in + 2;
}

bool
lms_dns_tcp_may_read(const struct lms_dns_tcp_conn *c)
{
	size_t answer = 2 + LMS_DNS_TCP_MSG_MAX;
	if (c->eof)
		return false;
	if (c->in_len > 0)
		return lms_dns_tcp_need(c) > 0;
	return c->out_len + (c->waiting + 1) * answer <= sizeof(c->out);
}

int
lms_dns_tcp_queue(struct lms_dns_tcp_conn *c, const uint8_t *msg, size_t len)
{
	if (len > LMS_DNS_TCP_MSG_MAX || c->out_len + 2 + len > sizeof(c->out))
		return -1;
	c->out[c->out_len] = (uint8_t)(len >> 8);
	c->out[c->out_len + 1] = (uint8_t)len;
	memcpy(c->out + c->out_len + 2, msg, len);
	c->out_len += 2 + len;
	return 0;
}

void
lms_dns_tcp_written(struct lms_dns_tcp_conn *c, size_t n)
{
	if (n >= c->out_len) {
		c->out_len = 0;
		return;
	}
	memmove(c->out, c->out + n, c->out_len - n);
	c->out_len -= n;
}
