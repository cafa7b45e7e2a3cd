/* The cluster-wide list of sandboxes (server/cluster-list.c): peers' answers checked as hostile input, the
 * entries merged newest first, a node without a usable answer named, never a silent gap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/cluster-list.h"

static void
answer(struct lms_peer_answer *a, const char *node, long status, const char *body)
{
	*a = (struct lms_peer_answer){.status = status};
	snprintf(a->node, sizeof(a->node), "%s", node);
	if (body != NULL)
		lms_buf_append(&a->body, body, strlen(body));
}

static json_t *
local_list(void)
{
	json_t *l = json_loads("{\"data\": [{\"id\": \"sbx_n-a_0000000000000001\", \"created_at\": "
			       "\"2026-12-01T10:00:00.500Z\"}]}",
			       0, NULL);
	lms_cluster_list_name_node(json_object_get(l, "data"), "n-a");
	return l;
}

static const char *
id_at(json_t *list, size_t i)
{
	return json_string_value(json_object_get(json_array_get(json_object_get(list, "data"), i), "id"));
}

static void
merges_newest_first_and_names_each_node(void **state)
{
	(void)state;
	struct lms_peer_answer a[2];
	answer(&a[0], "n-b", 200,
	       "{\"data\": [{\"id\": \"sbx_n-b_0000000000000002\", \"created_at\": \"2026-12-01T10:00:01.000Z\", "
	       "\"node\": \"n-z\"}, {\"id\": \"sbx_n-b_0000000000000003\", \"created_at\": "
	       "\"2026-12-01T09:00:00.000Z\"}]}");
	answer(&a[1], "n-c", 200, "{\"data\": []}");
	json_t *list = lms_cluster_list_merge(local_list(), a, 2);
	assert_int_equal(json_array_size(json_object_get(list, "data")), 3);
	assert_string_equal(id_at(list, 0), "sbx_n-b_0000000000000002");
	assert_string_equal(id_at(list, 1), "sbx_n-a_0000000000000001");
	assert_string_equal(id_at(list, 2), "sbx_n-b_0000000000000003");
	/* The node is the one asked, whatever the answer said. */
	assert_string_equal(
	    json_string_value(json_object_get(json_array_get(json_object_get(list, "data"), 0), "node")), "n-b");
	assert_string_equal(
	    json_string_value(json_object_get(json_array_get(json_object_get(list, "data"), 1), "node")), "n-a");
	assert_int_equal(json_array_size(json_object_get(list, "unreachable_nodes")), 0);
	json_decref(list);
	for (int i = 0; i < 2; i++)
		lms_peer_answer_clear(&a[i]);
}

static void
a_bad_answer_names_its_node_and_keeps_the_rest(void **state)
{
	(void)state;
	const char *bodies[] = {
	    "not json",
	    "[1, 2]",
	    "{\"data\": {}}",
	    "{\"data\": [42]}",
	    "{\"data\": [{\"id\": 7, \"created_at\": \"x\"}]}",
	    /* A peer that speaks for another node (or for this one): refused whole. */
	    "{\"data\": [{\"id\": \"sbx_n-a_0000000000000009\", \"created_at\": \"2026-12-01T10:00:00.000Z\"}]}",
	    "{\"data\": [{\"id\": \"sbx_0000000000000009\", \"created_at\": \"2026-12-01T10:00:00.000Z\"}]}",
	    "{\"data\": [{\"id\": \"sbx_n-b_0000000000000009\"}]}",
	};
	for (size_t k = 0; k < sizeof(bodies) / sizeof(bodies[0]); k++) {
		struct lms_peer_answer a;
		answer(&a, "n-b", 200, bodies[k]);
		json_t *list = lms_cluster_list_merge(local_list(), &a, 1);
		assert_int_equal(json_array_size(json_object_get(list, "data")), 1);
		assert_string_equal(id_at(list, 0), "sbx_n-a_0000000000000001");
		json_t *un = json_object_get(list, "unreachable_nodes");
		assert_int_equal(json_array_size(un), 1);
		assert_string_equal(json_string_value(json_array_get(un, 0)), "n-b");
		assert_non_null(json_string_value(json_object_get(json_object_get(list, "node_errors"), "n-b")));
		json_decref(list);
		lms_peer_answer_clear(&a);
	}
	/* No answer, an error status, too many entries. */
	struct lms_peer_answer a[3];
	answer(&a[0], "n-b", 0, NULL);
	snprintf(a[0].why, sizeof(a[0].why), "connect: Connection refused");
	answer(&a[1], "n-c", 401, "{\"error\": {}}");
	struct lms_buf big = {0};
	lms_buf_append(&big, "{\"data\": [", 10);
	for (int i = 0; i <= LMS_PEER_LIST_MAX_ENTRIES; i++) {
		char e[96];
		int n = snprintf(e, sizeof(e), "%s{\"id\": \"sbx_n-d_%016x\", \"created_at\": \"t\"}", i ? "," : "", i);
		lms_buf_append(&big, e, (size_t)n);
	}
	lms_buf_append(&big, "]}", 3);
	answer(&a[2], "n-d", 200, big.data);
	lms_buf_clear(&big);
	json_t *list = lms_cluster_list_merge(local_list(), a, 3);
	assert_int_equal(json_array_size(json_object_get(list, "data")), 1);
	json_t *un = json_object_get(list, "unreachable_nodes");
	assert_int_equal(json_array_size(un), 3);
	assert_string_equal(json_string_value(json_array_get(un, 2)), "n-d");
	json_t *errors = json_object_get(list, "node_errors");
	assert_string_equal(json_string_value(json_object_get(errors, "n-b")), "connect: Connection refused");
	assert_non_null(strstr(json_string_value(json_object_get(errors, "n-c")), "401"));
	assert_non_null(strstr(json_string_value(json_object_get(errors, "n-d")), "over"));
	json_decref(list);
	for (int i = 0; i < 3; i++)
		lms_peer_answer_clear(&a[i]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(merges_newest_first_and_names_each_node),
	    cmocka_unit_test(a_bad_answer_names_its_node_and_keeps_the_rest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
