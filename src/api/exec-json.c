#include "api/exec-json.h"

#include <math.h>

#include "core/alloc.h"
#include "core/base64.h"
#include "core/utf8.h"

static json_t *
encode_output(const char *data, size_t len, enum lms_encoding encoding)
{
	if (encoding == LMS_ENCODING_BASE64) {
		size_t out_len;
		_cleanup_free_ char *out = lms_base64_encode(data, len, &out_len);
		return json_stringn(out, out_len);
	}
	size_t clean_len;
	_cleanup_free_ char *clean = lms_utf8_sanitize(data ? data : "", len, &clean_len);
	return json_stringn(clean, clean_len);
}

/* Milliseconds with microsecond resolution: enough, and short in JSON. */
static json_t *
milliseconds(double ms)
{
	return json_real(round(ms * 1000.0) / 1000.0);
}

json_t *
lms_exec_result_json(const struct lms_sandbox_result *res, const char *out, size_t out_len, const char *err,
		     size_t err_len, enum lms_encoding encoding)
{
	const char *sig = lms_signal_name(res->signal);
	return json_pack("{s:o, s:o, s:i, s:o, s:b, s:b, s:b, s:b, s:b, s:o, s:o, s:I, s:I, s:I}", "stdout",
			 encode_output(out, out_len, encoding), "stderr", encode_output(err, err_len, encoding),
			 "exit_code", res->exit_code, "signal", sig ? json_string(sig) : json_null(), "timed_out",
			 res->timed_out, "oom_killed", res->oom_killed, "pids_limit_hit", res->pids_limit_hit,
			 "stdout_truncated", res->stdout_truncated, "stderr_truncated", res->stderr_truncated,
			 "duration_ms", milliseconds(res->duration_ms), "cpu_ms", milliseconds(res->cpu_ms),
			 "max_rss_kb", (json_int_t)res->max_rss_kb, "net_rx_bytes", (json_int_t)res->net_rx_bytes,
			 "net_tx_bytes", (json_int_t)res->net_tx_bytes);
}

json_t *
lms_error_json(const struct lms_error *e)
{
	const char *type = e->kind == LMS_ERR_INVALID || e->kind == LMS_ERR_NOT_FOUND || e->kind == LMS_ERR_CONFLICT
			       ? "invalid_request_error"
			   : e->kind == LMS_ERR_FORBIDDEN ? "permission_error"
			   : e->kind == LMS_ERR_BUSY	  ? "rate_limit_error"
							  : "server_error";
	return lms_api_error_json(type, lms_error_kind_name(e->kind), e->message);
}

json_t *
lms_api_error_json(const char *type, const char *code, const char *message)
{
	return json_pack("{s:{s:s, s:s, s:s}}", "error", "message", message, "type", type, "code", code);
}
