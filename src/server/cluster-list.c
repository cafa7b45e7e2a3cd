#include "server/cluster-list.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "server/cluster.h"

void
lms_peer_answer_clear(struct lms_peer_answer *a)
{
	lms_buf_clear(&a->body);
}

void
lms_cluster_list_name_node(json_t *data, const char *node)
{
	size_t i;
	json_t *e;
	json_array_foreach(data, i, e) json_object_set_new(e, "node", json_string(node));
}

/* The entries of a's answer (a new array), or NULL with why (sizeof a->why). */
static json_t *
answer_entries(const struct lms_peer_answer *a, char *why, size_t why_size)
{
	if (a->why[0] != '\0') {
		snprintf(why, why_size, "%s", a->why);
		return NULL;
	}
	if (a->status != 200) {
		snprintf(why, why_size, "answered HTTP %ld", a->status);
		return NULL;
	}
	if (a->body.len > LMS_PEER_LIST_MAX_BYTES) {
		snprintf(why, why_size, "answered over %u bytes", LMS_PEER_LIST_MAX_BYTES);
		return NULL;
	}
	json_error_t jerr;
	json_t *root = json_loadb(a->body.data ? a->body.data : "", a->body.len, JSON_REJECT_DUPLICATES, &jerr);
	json_t *data = json_object_get(root, "data");
	if (root == NULL || !json_is_array(data)) {
		snprintf(why, why_size, "answered with no list (%s)", root == NULL ? "not JSON" : "no \"data\" array");
		json_decref(root);
		return NULL;
	}
	if (json_array_size(data) > LMS_PEER_LIST_MAX_ENTRIES) {
		snprintf(why, why_size, "answered over %d sandboxes", LMS_PEER_LIST_MAX_ENTRIES);
		json_decref(root);
		return NULL;
	}
	size_t i;
	json_t *e;
	json_array_foreach(data, i, e)
	{
		const char *id = json_string_value(json_object_get(e, "id"));
		char node[LMS_NODE_MAX + 1];
		if (!json_is_object(e) || id == NULL || !json_is_string(json_object_get(e, "created_at")) ||
		    !lms_sandbox_id_node(id, node) || strcmp(node, a->node) != 0) {
			snprintf(why, why_size,
				 "answered a list whose entry %zu is not one of its sandboxes (an object with a "
				 "created_at and an id sbx_%s_...)",
				 i, a->node);
			json_decref(root);
			return NULL;
		}
	}
	json_incref(data);
	json_decref(root);
	return data;
}

static int
newest_first(const void *pa, const void *pb)
{
	json_t *a = *(json_t *const *)pa, *b = *(json_t *const *)pb;
	const char *ca = json_string_value(json_object_get(a, "created_at"));
	const char *cb = json_string_value(json_object_get(b, "created_at"));
	int r = strcmp(cb ? cb : "", ca ? ca : ""); /* RFC 3339 in UTC, fixed width: text order is time order */
	if (r != 0)
		return r;
	const char *ia = json_string_value(json_object_get(a, "id"));
	const char *ib = json_string_value(json_object_get(b, "id"));
	return strcmp(ia ? ia : "", ib ? ib : "");
}

json_t *
lms_cluster_list_merge(json_t *local, const struct lms_peer_answer *answers, size_t n)
{
	json_t *all = json_array(), *unreachable = json_array(), *errors = json_object();
	json_array_extend(all, json_object_get(local, "data"));
	json_decref(local);
	for (size_t i = 0; i < n; i++) {
		char why[320];
		json_t *data = answer_entries(&answers[i], why, sizeof(why));
		if (data == NULL) {
			json_array_append_new(unreachable, json_string(answers[i].node));
			json_object_set_new(errors, answers[i].node, json_string(why));
			continue;
		}
		lms_cluster_list_name_node(data, answers[i].node);
		json_array_extend(all, data);
		json_decref(data);
	}
	size_t count = json_array_size(all);
	json_t **sorted = xcalloc(count + 1, sizeof(*sorted));
	for (size_t i = 0; i < count; i++)
		sorted[i] = json_incref(json_array_get(all, i));
	qsort(sorted, count, sizeof(*sorted), newest_first);
	json_array_clear(all);
	for (size_t i = 0; i < count; i++)
		json_array_append_new(all, sorted[i]);
	free(sorted);
	return json_pack("{s:o, s:o, s:o}", "data", all, "unreachable_nodes", unreachable, "node_errors", errors);
}
