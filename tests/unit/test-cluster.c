/* A node's place in a cluster (server/cluster.c): node names, --peers, and the node a sandbox id names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "server/cluster.h"

static void
node_names_are_dns_labels(void **state)
{
	(void)state;
	assert_true(lms_node_name_valid("lm-sandbox-0"));
	assert_true(lms_node_name_valid("a"));
	assert_true(lms_node_name_valid("0123456789012345678901234567890123456789")); /* 40 */
	assert_false(lms_node_name_valid("01234567890123456789012345678901234567890"));
	const char *bad[] = {"", "-a", "a-", "A", "a_b", "a.b", "a b", "a/b", "ä", NULL};
	for (const char *const *p = bad; *p; p++)
		assert_false(lms_node_name_valid(*p));
}

static void
peers_parse_and_skip_this_node(void **state)
{
	(void)state;
	struct lms_cluster c;
	struct lms_error *err = NULL;
	assert_int_equal(lms_cluster_init(&c, "pod-1",
					  "pod-0=http://pod-0.peers:8000, pod-1=http://pod-1.peers:8000,\n"
					  "pod-2=http://[fd00::2]:9/,pod-3=http://10.0.0.3,",
					  &err),
			 0);
	assert_true(lms_cluster_enabled(&c));
	assert_int_equal(c.n_peers, 3);
	assert_null(lms_cluster_peer(&c, "pod-1"));
	const struct lms_peer *p = lms_cluster_peer(&c, "pod-0");
	assert_string_equal(p->host, "pod-0.peers");
	assert_string_equal(p->port, "8000");
	p = lms_cluster_peer(&c, "pod-2");
	assert_string_equal(p->host, "fd00::2");
	assert_string_equal(p->port, "9");
	assert_string_equal(p->url, "http://[fd00::2]:9");
	assert_string_equal(lms_cluster_peer(&c, "pod-3")->port, "80");
	char prefix[LMS_SANDBOX_ID_SIZE];
	lms_cluster_id_prefix(&c, prefix);
	assert_string_equal(prefix, "sbx_pod-1_");
	lms_cluster_free(&c);

	/* Alone: plain ids, as before clusters. */
	assert_int_equal(lms_cluster_init(&c, "solo", NULL, &err), 0);
	assert_false(lms_cluster_enabled(&c));
	lms_cluster_id_prefix(&c, prefix);
	assert_string_equal(prefix, "sbx_");
	lms_cluster_free(&c);
}

static void
bad_settings_name_the_flag(void **state)
{
	(void)state;
	const char *bad_peers[] = {"pod-0",
				   "=http://x",
				   "Pod=http://x",
				   "p=https://x:1",
				   "p=http://",
				   "p=http://x:0",
				   "p=http://x:99999",
				   "p=http://x/path",
				   "p=http://x?q",
				   "p=http://[::1",
				   "p=http://a b",
				   "p=http://x,p=http://y",
				   "p=http://x:80a",
				   NULL};
	for (const char *const *p = bad_peers; *p; p++) {
		struct lms_cluster c;
		struct lms_error *err = NULL;
		assert_int_equal(lms_cluster_init(&c, "me", *p, &err), -1);
		assert_int_equal(err->kind, LMS_ERR_INVALID);
		assert_non_null(strstr(err->message, "--peers"));
		lms_error_free(err);
	}
	struct lms_cluster c;
	struct lms_error *err = NULL;
	assert_int_equal(lms_cluster_init(&c, "Not_A_Label", NULL, &err), -1);
	assert_non_null(strstr(err->message, "--node-id"));
	lms_error_free(err);
}

static void
the_default_node_is_the_pod_name(void **state)
{
	(void)state;
	struct lms_cluster c;
	struct lms_error *err = NULL;
	setenv("HOSTNAME", "LM-Sandbox-2.example.org", 1);
	assert_int_equal(lms_cluster_init(&c, NULL, NULL, &err), 0);
	assert_string_equal(c.node, "lm-sandbox-2");
	setenv("HOSTNAME", "bad_name", 1);
	assert_int_equal(lms_cluster_init(&c, NULL, NULL, &err), -1);
	assert_non_null(strstr(err->message, "give --node-id"));
	lms_error_free(err);
	unsetenv("HOSTNAME");
}

static void
ids_name_their_node(void **state)
{
	(void)state;
	char node[LMS_NODE_MAX + 1];
	assert_true(lms_sandbox_id_node("sbx_pod-1_0123456789abcdef", node));
	assert_string_equal(node, "pod-1");
	assert_false(lms_sandbox_id_node("sbx_0123456789abcdef", node)); /* a plain id: local */
	assert_false(lms_sandbox_id_node("proc_0123456789abcdef", node));
	assert_false(lms_sandbox_id_node("sbx__0123456789abcdef", node));
	/* Any name is read out, valid or not: the caller finds no such peer (404), never a forward. */
	assert_true(lms_sandbox_id_node("sbx_Evil:80_0", node));
	assert_string_equal(node, "Evil:80");
	assert_false(lms_sandbox_id_node("sbx_01234567890123456789012345678901234567890_0", node)); /* 41 */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(node_names_are_dns_labels),  cmocka_unit_test(peers_parse_and_skip_this_node),
	    cmocka_unit_test(bad_settings_name_the_flag), cmocka_unit_test(the_default_node_is_the_pod_name),
	    cmocka_unit_test(ids_name_their_node),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
