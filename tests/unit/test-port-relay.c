/* The port relay's HTTP (server/port-relay.c) over a socket pair: the inside's answer written in pieces,
 * framed by length, chunks or the connection's end; malformed, oversized or two-length heads refused;
 * a silent inside times out; hop-by-hop headers named. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "server/port-relay.h"

struct pair {
	struct lms_port_relay *relay;
	int inside; /* the inside server's end */
};

static struct pair
pair_new(void)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	return (struct pair){lms_port_relay_new(sv[0]), sv[1]};
}

static void
pair_free(struct pair *p)
{
	lms_port_relay_free(p->relay);
	if (p->inside >= 0)
		close(p->inside);
}

/* Writes text as the inside (then closes its end when close_after). */
static void
inside_says(struct pair *p, const char *text, bool close_after)
{
	size_t len = strlen(text);
	assert_int_equal(write(p->inside, text, len), (ssize_t)len);
	if (close_after) {
		close(p->inside);
		p->inside = -1;
	}
}

/* The whole body, or NULL when it failed (*kind its error's kind). */
static char *
body(struct pair *p, int *kind)
{
	struct lms_buf out = {0};
	char buf[7]; /* small: pieces cross every boundary */
	for (;;) {
		struct lms_error *err = NULL;
		ssize_t n = lms_port_relay_body(p->relay, buf, sizeof(buf), -1, 200, &err);
		if (n > 0) {
			lms_buf_append(&out, buf, (size_t)n);
			continue;
		}
		if (n == 0) {
			lms_buf_append(&out, "", 0);
			return out.data ? out.data : xstrdup("");
		}
		*kind = n == LMS_PORT_AGAIN ? -2 : (int)err->kind;
		lms_error_free(err);
		lms_buf_clear(&out);
		return NULL;
	}
}

static void
test_length_framed(void **state)
{
	(void)state;
	struct pair p = pair_new();
	inside_says(&p, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world", false);
	assert_int_equal(lms_port_relay_read_head(p.relay, 0, 1000, NULL), 0);
	assert_int_equal(lms_port_relay_status(p.relay), 200);
	assert_int_equal(lms_port_relay_header_count(p.relay), 2);
	const char *name, *value;
	lms_port_relay_header(p.relay, 0, &name, &value);
	assert_string_equal(name, "Content-Type");
	assert_string_equal(value, "text/plain");
	int kind = 0;
	char *b = body(&p, &kind); /* the connection stays open: the length ends it */
	assert_non_null(b);
	assert_string_equal(b, "hello world");
	free(b);
	pair_free(&p);
}

static void
test_chunked_with_interim_and_trailer(void **state)
{
	(void)state;
	struct pair p = pair_new();
	inside_says(&p,
		    "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
		    "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
		    "5;ext=1\r\nhello\r\n1\r\n \r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: t\r\n\r\n",
		    false);
	assert_int_equal(lms_port_relay_read_head(p.relay, 0, 1000, NULL), 0);
	assert_int_equal(lms_port_relay_status(p.relay), 201);
	int kind = 0;
	char *b = body(&p, &kind);
	assert_non_null(b);
	assert_string_equal(b, "hello 0123456789abcdef");
	free(b);
	pair_free(&p);
}

static void
test_until_the_end_of_the_connection_and_cut_short(void **state)
{
	(void)state;
	struct pair p = pair_new();
	inside_says(&p, "HTTP/1.0 200 OK\n\nevent: a\ndata: 1\n\n", true);
	assert_int_equal(lms_port_relay_read_head(p.relay, 0, 1000, NULL), 0);
	int kind = 0;
	char *b = body(&p, &kind);
	assert_string_equal(b, "event: a\ndata: 1\n\n");
	free(b);
	pair_free(&p);

	p = pair_new();
	inside_says(&p, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", true);
	assert_int_equal(lms_port_relay_read_head(p.relay, 0, 1000, NULL), 0);
	assert_null(body(&p, &kind));
	assert_int_equal(kind, LMS_ERR_BAD_GATEWAY);
	pair_free(&p);

	/* HEAD, 204 and 304 have no body, whatever they say. */
	p = pair_new();
	inside_says(&p, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", false);
	assert_int_equal(lms_port_relay_read_head(p.relay, LMS_PORT_NO_BODY, 1000, NULL), 0);
	b = body(&p, &kind);
	assert_string_equal(b, "");
	free(b);
	pair_free(&p);
}

static int
head_error(const char *text, bool close_after)
{
	struct pair p = pair_new();
	inside_says(&p, text, close_after);
	struct lms_error *err = NULL;
	int r = lms_port_relay_read_head(p.relay, 0, 100, &err);
	int kind = r < 0 ? (int)err->kind : -1;
	lms_error_free(err);
	pair_free(&p);
	return kind;
}

static void
test_bad_heads_are_refused(void **state)
{
	(void)state;
	assert_int_equal(head_error("SSH-2.0-OpenSSH\r\n\r\n", false), LMS_ERR_BAD_GATEWAY);
	assert_int_equal(head_error("HTTP/1.1 99 Low\r\n\r\n", false), LMS_ERR_BAD_GATEWAY);
	assert_int_equal(head_error("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false),
			 LMS_ERR_BAD_GATEWAY);
	assert_int_equal(head_error("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", false), LMS_ERR_BAD_GATEWAY);
	assert_int_equal(head_error("HTTP/1.1 200 OK\r\n folded\r\n\r\n", false), LMS_ERR_BAD_GATEWAY);
	assert_int_equal(head_error("HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n", false), LMS_ERR_BAD_GATEWAY);
	assert_int_equal(head_error("HTTP/1.1 101 Switching Protocols\r\n\r\n", false), LMS_ERR_BAD_GATEWAY);
	assert_int_equal(head_error("HTTP/1.1 200 OK\r\n", true), LMS_ERR_BAD_GATEWAY); /* closed mid-head */
	assert_int_equal(head_error("HTTP/1.1 200 OK\r\n", false), LMS_ERR_TIMEOUT);	/* silent */

	/* A head past 64 KiB, sent while the relay reads. */
	struct pair p = pair_new();
	char *big = xmalloc(LMS_PORT_HEAD_MAX + 1024);
	memset(big, 'a', LMS_PORT_HEAD_MAX + 1023);
	big[LMS_PORT_HEAD_MAX + 1023] = '\0';
	memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
	assert_int_equal(fcntl(p.inside, F_SETFL, O_NONBLOCK), 0);
	size_t sent = 0;
	struct lms_error *err = NULL;
	int r = 0;
	while (sent < strlen(big)) {
		ssize_t n = write(p.inside, big + sent, strlen(big) - sent);
		if (n > 0)
			sent += (size_t)n;
		r = lms_port_relay_read_head(p.relay, 0, 20, &err);
		if (r < 0 && err->kind != LMS_ERR_TIMEOUT)
			break;
		lms_error_free(err);
		err = NULL;
	}
	assert_int_equal(r, -1);
	assert_int_equal(err->kind, LMS_ERR_BAD_GATEWAY);
	assert_non_null(strstr(err->message, "64 KiB"));
	lms_error_free(err);
	free(big);
	pair_free(&p);

	/* A chunk longer than its size. */
	p = pair_new();
	inside_says(&p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", false);
	assert_int_equal(lms_port_relay_read_head(p.relay, 0, 1000, NULL), 0);
	int kind = 0;
	assert_null(body(&p, &kind));
	assert_int_equal(kind, LMS_ERR_BAD_GATEWAY);
	pair_free(&p);
}

/* A 101 when the request asked for it: the bytes after its head are the new protocol's, passed on first. */
static void
test_upgrade_bridge(void **state)
{
	(void)state;
	struct pair p = pair_new();
	inside_says(&p, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nfirst", false);
	assert_int_equal(lms_port_relay_read_head(p.relay, LMS_PORT_UPGRADE, 1000, NULL), 0);
	assert_int_equal(lms_port_relay_status(p.relay), 101);
	int client[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, client), 0);
	/* The client has sent "early" already, then "late", then closes; the inside closes its side. */
	assert_int_equal(write(client[1], "late", 4), 4);
	assert_int_equal(shutdown(client[1], SHUT_WR), 0);
	assert_int_equal(shutdown(p.inside, SHUT_WR), 0);
	atomic_bool stop = false;
	lms_port_relay_bridge(p.relay, client[0], "early", 5, 1000, &stop, 100);
	char got[32] = {0};
	assert_int_equal(read(p.inside, got, sizeof(got) - 1), 9);
	assert_string_equal(got, "earlylate");
	memset(got, 0, sizeof(got));
	assert_int_equal(read(client[1], got, sizeof(got) - 1), 5);
	assert_string_equal(got, "first");
	close(client[0]);
	close(client[1]);
	pair_free(&p);
}

static void
test_hop_by_hop(void **state)
{
	(void)state;
	assert_true(lms_http_hop_by_hop("connection", NULL));
	assert_true(lms_http_hop_by_hop("Transfer-Encoding", NULL));
	assert_true(lms_http_hop_by_hop("X-Hop", "keep-alive, x-hop"));
	assert_false(lms_http_hop_by_hop("X-Ho", "keep-alive, x-hop"));
	assert_false(lms_http_hop_by_hop("Content-Type", "close"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_length_framed),
	    cmocka_unit_test(test_chunked_with_interim_and_trailer),
	    cmocka_unit_test(test_until_the_end_of_the_connection_and_cut_short),
	    cmocka_unit_test(test_bad_heads_are_refused),
	    cmocka_unit_test(test_upgrade_bridge),
	    cmocka_unit_test(test_hop_by_hop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
