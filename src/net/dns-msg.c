#include "net/dns-msg.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define FLAG_QR 0x8000u
#define FLAG_TC 0x0200u
#define FLAG_RD 0x0100u
#define FLAG_RA 0x0080u
#define OPCODE(f) (((f) >> 11) & 0xfu)
#define RCODE(f) ((f)&0xfu)
#define TYPE_OPT 41
/* Pointers followed in one name: a name has at most 127 labels, and each pointer must go back. */
#define MAX_POINTERS 64

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void
put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

/*
 * Reads the name at *off and moves *off past it (past its first pointer if it has one). With text,
 * writes the name there with dots (LMS_DNS_NAME_TEXT_MAX + 1 bytes) and refuses a label with a byte
 * that is not a host name's; without, only checks its structure. pointers: whether compression may
 * be used (not in a query's question).
 */
static int
read_name(const uint8_t *m, size_t len, size_t *off, char *text, bool pointers)
{
	size_t pos = *off, out = 0, wire = 0, end = 0;
	int jumps = 0;
	for (;;) {
		if (pos >= len)
			return -1;
		uint8_t l = m[pos];
		if ((l & 0xc0) == 0xc0) {
			if (!pointers || pos + 1 >= len)
				return -1;
			size_t target = (size_t)(l & 0x3f) << 8 | m[pos + 1];
			if (target >= pos || ++jumps > MAX_POINTERS)
				return -1;
			if (!end)
				end = pos + 2;
			pos = target;
			continue;
		}
		if (l & 0xc0)
			return -1; /* the reserved label kinds */
		wire += (size_t)l + 1;
		if (wire > 255)
			return -1;
		if (l == 0) {
			if (!end)
				end = pos + 1;
			break;
		}
		if (pos + 1 + l > len)
			return -1;
		if (text) {
			if (out + (out ? 1 : 0) + l > LMS_DNS_NAME_TEXT_MAX)
				return -1;
			if (out)
				text[out++] = '.';
			for (size_t i = 0; i < l; i++) {
				char c = (char)m[pos + 1 + i];
				if (!isalnum((unsigned char)c) && c != '-' && c != '_')
					return -1;
				text[out++] = c;
			}
		}
		pos += 1 + (size_t)l;
	}
	if (text)
		text[out] = '\0';
	*off = end;
	return 0;
}

/* Writes a text name (already validated) in wire form; returns the bytes written, 0 if cap is short. */
static size_t
write_name(const char *name, uint8_t *out, size_t cap)
{
	size_t n = 0;
	const char *label = name;
	while (*label) {
		const char *dot = strchr(label, '.');
		size_t l = dot ? (size_t)(dot - label) : strlen(label);
		if (l == 0 || l > 63 || n + 1 + l >= cap)
			return 0;
		out[n++] = (uint8_t)l;
		memcpy(out + n, label, l);
		n += l;
		label += l + (dot ? 1 : 0);
	}
	if (n + 1 > cap)
		return 0;
	out[n++] = 0;
	return n;
}

int
lms_dns_parse_query(const uint8_t *m, size_t len, struct lms_dns_question *q)
{
	memset(q, 0, sizeof(*q));
	if (len < LMS_DNS_HEADER)
		return -1;
	uint16_t flags = get16(m + 2);
	q->id = get16(m);
	q->rd = flags & FLAG_RD;
	if (flags & FLAG_QR)
		return -1;
	if (OPCODE(flags) != 0)
		return LMS_DNS_NOTIMP;
	/* One question, nothing else but an EDNS0 OPT record (which this forwarder does not need). */
	if (get16(m + 4) != 1 || get16(m + 6) != 0 || get16(m + 8) != 0 || get16(m + 10) > 1)
		return LMS_DNS_FORMERR;
	size_t off = LMS_DNS_HEADER;
	if (read_name(m, len, &off, q->name, false) < 0 || off + 4 > len)
		return LMS_DNS_FORMERR;
	q->qtype = get16(m + off);
	q->qclass = get16(m + off + 2);
	q->has_question = true;
	off += 4;
	/* The additional record, when it is an OPT at the root (RFC 6891 6.1.2): its class is the size the
	 * client takes over UDP. Anything else there is ignored, as before. */
	if (get16(m + 10) == 1 && off + 11 <= len && m[off] == 0 && get16(m + off + 1) == TYPE_OPT)
		q->edns_size = get16(m + off + 3);
	if (q->qclass != LMS_DNS_CLASS_IN)
		return LMS_DNS_NOTIMP;
	if (!lms_dns_name_valid(q->name))
		return LMS_DNS_REFUSED;
	return 0;
}

static size_t
write_header(uint8_t *out, uint16_t id, uint16_t flags, uint16_t qd, uint16_t an, uint16_t ar)
{
	put16(out, id);
	put16(out + 2, flags);
	put16(out + 4, qd);
	put16(out + 6, an);
	put16(out + 8, 0);
	put16(out + 10, ar);
	return LMS_DNS_HEADER;
}

static size_t
write_question(const struct lms_dns_question *q, uint8_t *out, size_t cap)
{
	size_t n = write_name(q->name, out, cap);
	if (n == 0 || n + 4 > cap)
		return 0;
	put16(out + n, q->qtype);
	put16(out + n + 2, q->qclass);
	return n + 4;
}

size_t
lms_dns_write_query(const struct lms_dns_question *q, uint16_t id, uint16_t edns_size, uint8_t *out, size_t cap)
{
	uint8_t opt[] = {0, 0, TYPE_OPT, (uint8_t)(edns_size >> 8), (uint8_t)edns_size, 0, 0, 0, 0, 0, 0};
	if (cap < LMS_DNS_HEADER)
		return 0;
	size_t n = write_header(out, id, FLAG_RD, 1, 0, 1);
	size_t qn = write_question(q, out + n, cap - n);
	if (qn == 0 || n + qn + sizeof(opt) > cap)
		return 0;
	n += qn;
	memcpy(out + n, opt, sizeof(opt));
	return n + sizeof(opt);
}

static bool
same_question(const uint8_t *m, size_t len, size_t *off, const struct lms_dns_question *q)
{
	char name[LMS_DNS_NAME_TEXT_MAX + 1];
	if (read_name(m, len, off, name, true) < 0 || *off + 4 > len)
		return false;
	bool same = strcasecmp(name, q->name) == 0 && get16(m + *off) == q->qtype && get16(m + *off + 2) == q->qclass;
	*off += 4;
	return same;
}

int
lms_dns_parse_answer(const uint8_t *m, size_t len, uint16_t id, const struct lms_dns_question *q, int *rcode, bool *tc,
		     struct lms_dns_answer *out, size_t max, size_t *n)
{
	*n = 0;
	*tc = false;
	if (len < LMS_DNS_HEADER || get16(m) != id)
		return -1;
	uint16_t flags = get16(m + 2);
	if (!(flags & FLAG_QR) || OPCODE(flags) != 0 || get16(m + 4) != 1)
		return -1;
	size_t off = LMS_DNS_HEADER;
	if (!same_question(m, len, &off, q))
		return -1;
	*rcode = (int)RCODE(flags);
	*tc = flags & FLAG_TC;
	if (*tc)
		return 0;
	unsigned count = get16(m + 6);
	for (unsigned i = 0; i < count; i++) {
		if (read_name(m, len, &off, NULL, true) < 0 || off + 10 > len)
			return -1;
		uint16_t type = get16(m + off), class = get16(m + off + 2), rdlen = get16(m + off + 8);
		uint32_t ttl = get32(m + off + 4);
		off += 10;
		if (off + rdlen > len)
			return -1;
		bool a = type == LMS_DNS_TYPE_A && rdlen == 4, aaaa = type == LMS_DNS_TYPE_AAAA && rdlen == 16;
		if (class == LMS_DNS_CLASS_IN && type == q->qtype && (a || aaaa) && *n < max) {
			struct lms_dns_answer *r = &out[(*n)++];
			memset(r, 0, sizeof(*r));
			r->addr.family = a ? AF_INET : AF_INET6;
			memcpy(r->addr.addr, m + off, rdlen);
			r->ttl = ttl > 0x7fffffffu ? 0 : ttl; /* RFC 2181: a TTL with the top bit set is 0 */
		}
		off += rdlen;
	}
	return 0;
}

size_t
lms_dns_write_answer(const struct lms_dns_question *q, int rcode, const struct lms_dns_answer *a, size_t n,
		     uint8_t *out, size_t cap)
{
	if (cap < LMS_DNS_HEADER)
		return 0;
	if (rcode != LMS_DNS_NOERROR)
		n = 0;
	uint16_t flags = (uint16_t)(FLAG_QR | FLAG_RA | (q->rd ? FLAG_RD : 0) | (rcode & 0xf));
	size_t len = write_header(out, q->id, flags, q->has_question ? 1 : 0, (uint16_t)n, 0);
	if (q->has_question) {
		size_t qn = write_question(q, out + len, cap - len);
		if (qn == 0)
			return 0;
		len += qn;
	}
	for (size_t i = 0; i < n; i++) {
		size_t rdlen = a[i].addr.family == AF_INET ? 4 : 16;
		if (len + 12 + rdlen > cap)
			return 0;
		put16(out + len, 0xc000 | LMS_DNS_HEADER); /* the question's name */
		put16(out + len + 2, a[i].addr.family == AF_INET ? LMS_DNS_TYPE_A : LMS_DNS_TYPE_AAAA);
		put16(out + len + 4, LMS_DNS_CLASS_IN);
		put32(out + len + 6, a[i].ttl > LMS_DNS_TTL_MAX ? LMS_DNS_TTL_MAX : a[i].ttl);
		put16(out + len + 10, (uint16_t)rdlen);
		memcpy(out + len + 12, a[i].addr.addr, rdlen);
		len += 12 + rdlen;
	}
	return len;
}

void
lms_dns_set_tc(uint8_t *msg, size_t len)
{
	if (len >= 4)
		put16(msg + 2, get16(msg + 2) | FLAG_TC);
}

size_t
lms_dns_udp_max(const struct lms_dns_question *q)
{
	size_t max = q->edns_size < LMS_DNS_UDP_PLAIN ? LMS_DNS_UDP_PLAIN : q->edns_size;
	return max > LMS_DNS_MSG_MAX ? LMS_DNS_MSG_MAX : max;
}

size_t
lms_dns_truncate(uint8_t *msg, size_t len, size_t max)
{
	if (len <= max || len < LMS_DNS_HEADER || max < LMS_DNS_HEADER)
		return len <= max ? len : 0;
	size_t off = LMS_DNS_HEADER;
	bool question = get16(msg + 4) == 1 && read_name(msg, len, &off, NULL, true) == 0 && off + 4 <= max;
	put16(msg + 2, get16(msg + 2) | FLAG_TC);
	put16(msg + 4, question ? 1 : 0);
	for (size_t i = 6; i < LMS_DNS_HEADER; i += 2)
		put16(msg + i, 0);
	return question ? off + 4 : LMS_DNS_HEADER;
}

void
lms_dns_set_id(uint8_t *msg, size_t len, uint16_t id)
{
	if (len >= 2)
		put16(msg, id);
}
