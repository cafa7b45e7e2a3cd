/* `lm-sandbox sandbox create`, `ls` and `rm`: POST, GET and DELETE /v1/sandboxes[/{id}]. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "client/age.h"
#include "client/commands.h"
#include "core/alloc.h"
#include "core/buf.h"

#define MAX_LIST_BYTES (64u << 20)

void
lms_client_report(const struct lms_error *e)
{
	fprintf(stderr, "lm-sandbox: %s\n", e->message);
}

static int
failed(struct lms_error *e)
{
	lms_client_report(e);
	return LMS_CLIENT_EXIT_FAILED;
}

int
lms_client_create(struct lms_client *c, const struct lms_client_args *a)
{
	_cleanup_error_ struct lms_error *err = NULL;
	struct lms_client_request rq = {.method = "POST", .path = "/v1/sandboxes", .json = a->body, .body_fd = -1};
	struct lms_client_response resp;
	int r = lms_client_call(c, &rq, &resp, &err);
	if (r == 0 && resp.status != 201 && resp.status != 200)
		r = lms_client_api_error(c, &resp, "create a sandbox", &err);
	json_t *sbx = r == 0 ? lms_client_json(&resp, &err) : NULL;
	const char *id = json_string_value(json_object_get(sbx, "id"));
	if (r == 0 && sbx != NULL && id == NULL)
		lms_error_set(&err, LMS_ERR_INTERNAL, 0, "create a sandbox: the daemon's answer has no id");
	if (id != NULL)
		printf("%s\n", id);
	json_decref(sbx);
	lms_client_response_clear(&resp);
	return err != NULL ? failed(err) : 0;
}

/* ---- ls ---- */

static long long
now_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return tv.tv_sec * 1000LL + tv.tv_usec / 1000;
}

/* Bytes that could move the cursor or clear the screen: a label is whatever a client put there. */
static char *
printable(const char *s)
{
	char *out = xstrdup(s ? s : "");
	for (char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return out;
}

static char *
labels_of(json_t *metadata)
{
	struct lms_buf b = {0};
	const char *key;
	json_t *value;
	json_object_foreach(metadata, key, value)
	{
		if (b.len > 0)
			lms_buf_append(&b, ",", 1);
		lms_buf_append(&b, key, strlen(key));
		lms_buf_append(&b, "=", 1);
		const char *v = json_string_value(value);
		lms_buf_append(&b, v ? v : "", v ? strlen(v) : 0);
	}
	lms_buf_append(&b, "", 0);
	char *raw = lms_buf_steal(&b, NULL);
	char *out = printable(raw);
	free(raw);
	return out;
}

enum { COL_ID, COL_NODE, COL_STATE, COL_CREATED, COL_EXPIRES, COL_LABELS, N_COLS };

/* show_node: a cluster's list (its entries name their node); a daemon alone has no NODE column. */
static void
print_row(char *const cells[N_COLS], const size_t widths[N_COLS], bool show_node)
{
	for (int i = 0; i < N_COLS; i++) {
		if (i == COL_NODE && !show_node)
			continue;
		if (i == N_COLS - 1)
			printf("%s\n", cells[i]);
		else
			printf("%-*s   ", (int)widths[i], cells[i]);
	}
}

/* A cluster's list that some nodes did not give (API-NOTES.md, "Cluster"): said on stderr, never a silent
 * gap; the list of the others still goes to stdout. */
static void
report_unreachable(json_t *list)
{
	json_t *errors = json_object_get(list, "node_errors");
	size_t i;
	json_t *name;
	json_array_foreach(json_object_get(list, "unreachable_nodes"), i, name)
	{
		if (!json_is_string(name))
			continue;
		char *node = printable(json_string_value(name));
		char *why = printable(json_string_value(json_object_get(errors, json_string_value(name))));
		fprintf(stderr,
			"lm-sandbox: the list is partial: node %s did not answer%s%s: its sandboxes are missing\n",
			node, why[0] ? ": " : "", why);
		free(node);
		free(why);
	}
}

int
lms_client_ls(struct lms_client *c, const struct lms_client_args *a)
{
	_cleanup_error_ struct lms_error *err = NULL;
	_cleanup_free_ char *path = xasprintf("/v1/sandboxes%s", a->query);
	struct lms_client_request rq = {.method = "GET", .path = path, .body_fd = -1, .max_body = MAX_LIST_BYTES};
	struct lms_client_response resp;
	int r = lms_client_call(c, &rq, &resp, &err);
	if (r == 0 && resp.status != 200)
		r = lms_client_api_error(c, &resp, "list the sandboxes", &err);
	json_t *list = r == 0 ? lms_client_json(&resp, &err) : NULL;
	lms_client_response_clear(&resp);
	json_t *data = json_object_get(list, "data");
	if (list != NULL && !json_is_array(data))
		lms_error_set(&err, LMS_ERR_INTERNAL, 0, "list the sandboxes: the daemon's answer has no data array");
	if (err != NULL) {
		json_decref(list);
		return failed(err);
	}
	report_unreachable(list);
	size_t n = json_array_size(data);
	char *(*rows)[N_COLS] = xcalloc(n + 1, sizeof(*rows));
	size_t widths[N_COLS] = {0};
	const char *titles[N_COLS] = {"ID", "NODE", "STATE", "CREATED", "EXPIRES", "LABELS"};
	bool show_node = false;
	for (int i = 0; i < N_COLS; i++)
		rows[0][i] = xstrdup(titles[i]);
	long long now = now_ms();
	for (size_t i = 0; i < n; i++) {
		json_t *s = json_array_get(data, i);
		char when[96];
		rows[i + 1][COL_ID] = printable(json_string_value(json_object_get(s, "id")));
		const char *node = json_string_value(json_object_get(s, "node"));
		show_node = show_node || node != NULL;
		rows[i + 1][COL_NODE] = printable(node);
		rows[i + 1][COL_STATE] = printable(json_string_value(json_object_get(s, "state")));
		long long created = lms_client_parse_time_ms(json_string_value(json_object_get(s, "created_at")));
		/* A clock a little ahead of ours is not a sandbox made in the future. */
		lms_client_relative_time(created > now ? now : created, now, when, sizeof(when));
		rows[i + 1][COL_CREATED] = xstrdup(when);
		long long expires = lms_client_parse_time_ms(json_string_value(json_object_get(s, "expires_at")));
		lms_client_relative_time(expires, now, when, sizeof(when));
		rows[i + 1][COL_EXPIRES] = xstrdup(when);
		rows[i + 1][COL_LABELS] = labels_of(json_object_get(s, "metadata"));
	}
	for (size_t i = 0; i <= n; i++)
		for (int col = 0; col < N_COLS; col++)
			if (strlen(rows[i][col]) > widths[col])
				widths[col] = strlen(rows[i][col]);
	for (size_t i = a->quiet ? 1 : 0; i <= n; i++) {
		if (a->quiet)
			printf("%s\n", rows[i][COL_ID]);
		else
			print_row(rows[i], widths, show_node);
	}
	for (size_t i = 0; i <= n; i++)
		for (int col = 0; col < N_COLS; col++)
			free(rows[i][col]);
	free(rows);
	json_decref(list);
	return fflush(stdout) == 0 ? 0 : LMS_CLIENT_EXIT_FAILED;
}

/* ---- rm ---- */

int
lms_client_rm(struct lms_client *c, const struct lms_client_args *a)
{
	int status = 0;
	for (size_t i = 0; i < a->n_operands; i++) {
		const char *id = a->operands[i];
		_cleanup_error_ struct lms_error *err = NULL;
		_cleanup_free_ char *esc = lms_client_escape(id, false);
		_cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s", esc);
		_cleanup_free_ char *what = xasprintf("sandbox %s", id);
		struct lms_client_request rq = {.method = "DELETE", .path = path, .body_fd = -1};
		struct lms_client_response resp;
		int r = lms_client_call(c, &rq, &resp, &err);
		if (r == 0 && resp.status != 204 && resp.status != 200)
			r = lms_client_api_error(c, &resp, what, &err);
		lms_client_response_clear(&resp);
		if (r < 0) {
			status = failed(err);
			if (err->kind == LMS_ERR_UNREACHABLE || err->kind == LMS_ERR_FORBIDDEN)
				break; /* the next ones would fail the same way */
			continue;
		}
		printf("%s\n", id);
		fflush(stdout);
	}
	return status;
}
