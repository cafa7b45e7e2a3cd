#include <signal.h>
#include <string.h>

#include "core/alloc.h"
#include "sandbox/sandbox.h"

void
lms_sandbox_spec_init(struct lms_sandbox_spec *spec)
{
	*spec = (struct lms_sandbox_spec){
	    .limits =
		{
		    .timeout_ms = LMS_DEFAULT_TIMEOUT_MS,
		    .memory_mb = LMS_DEFAULT_MEMORY_MB,
		    .pids = LMS_DEFAULT_PIDS,
		    .cpu_ms = 0,
		    .output_bytes = LMS_DEFAULT_OUTPUT_BYTES,
		    .disk_mb = LMS_DEFAULT_DISK_MB,
		},
	    .cancel_fd = -1,
	};
}

static int
check_range(const char *name, uint64_t value, uint64_t min, uint64_t max, struct lms_error **err)
{
	if (value < min || value > max)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "%s must be between %llu and %llu, not %llu", name,
				     (unsigned long long)min, (unsigned long long)max, (unsigned long long)value);
	return 0;
}

static int
check_strings(const char *name, char *const *v, size_t max, bool need_equals, struct lms_error **err)
{
	size_t n = 0;
	for (; v && v[n]; n++) {
		if (need_equals && (strchr(v[n], '=') == NULL || v[n][0] == '='))
			return lms_error_set(err, LMS_ERR_INVALID, 0, "%s entry '%s' is not NAME=VALUE", name, v[n]);
	}
	if (n > max)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "%s has %zu entries, more than %zu", name, n, max);
	return 0;
}

int
lms_sandbox_spec_validate(const struct lms_sandbox_spec *spec, struct lms_error **err)
{
	const struct lms_limits *l = &spec->limits;
	if (spec->argv == NULL || spec->argv[0] == NULL || spec->argv[0][0] == '\0')
		return lms_error_set(err, LMS_ERR_INVALID, 0, "no program to run: argv is empty");
	if (check_strings("argv", spec->argv, LMS_MAX_ARGS, false, err) < 0 ||
	    check_strings("env", spec->env, LMS_MAX_ENV, true, err) < 0)
		return -1;
	if (spec->cwd != NULL && (spec->cwd[0] != '/' || strlen(spec->cwd) >= 4096))
		return lms_error_set(err, LMS_ERR_INVALID, 0, "cwd must be an absolute path, not '%s'", spec->cwd);
	if (spec->storage != NULL && (spec->storage[0] != '/' || strlen(spec->storage) >= 1024))
		return lms_error_set(err, LMS_ERR_INVALID, 0, "storage must be an absolute path under 1024 bytes");
	if (lms_image_check(spec->image, spec->layers, err) < 0)
		return -1;
	if (check_range("timeout_ms", l->timeout_ms, 1, LMS_MAX_TIMEOUT_MS, err) < 0 ||
	    check_range("memory_mb", l->memory_mb, 4, LMS_MAX_MEMORY_MB, err) < 0 ||
	    check_range("pids", l->pids, 1, LMS_MAX_PIDS, err) < 0 ||
	    check_range("cpu_ms", l->cpu_ms, 0, LMS_MAX_TIMEOUT_MS, err) < 0 ||
	    check_range("output_bytes", l->output_bytes, 0, LMS_MAX_OUTPUT_BYTES, err) < 0 ||
	    check_range("disk_mb", l->disk_mb, 1, LMS_MAX_DISK_MB, err) < 0 ||
	    (l->millicpus != 0 &&
	     check_range("cpus (in thousandths)", l->millicpus, LMS_MIN_MILLICPUS, LMS_MAX_MILLICPUS, err) < 0))
		return -1;
	return 0;
}

int
lms_limits_parse_cpus(const char *what, const char *text, uint64_t *millicpus, struct lms_error **err)
{
	/* By hand rather than strtod: no locale, no exponents, no rounding of "0.1" to 0.0999... */
	uint64_t whole = 0, frac = 0;
	int digits = 0, decimals = 0;
	const char *p = text;
	for (; *p >= '0' && *p <= '9' && whole <= LMS_MAX_MILLICPUS; p++, digits++)
		whole = whole * 10 + (uint64_t)(*p - '0');
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9' && decimals < 3; p++, decimals++)
			frac = frac * 10 + (uint64_t)(*p - '0');
	for (int i = decimals; i < 3; i++)
		frac *= 10;
	uint64_t v = whole * 1000 + frac;
	if ((digits == 0 && decimals == 0) || *p != '\0')
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "%s must be a number of cores such as 0.5 or 2 (at most three decimals), not '%s'",
				     what, text);
	if (v != 0 && (v < LMS_MIN_MILLICPUS || v > LMS_MAX_MILLICPUS))
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "%s must be 0 (no limit) or between 0.01 and %llu, not %s", what,
				     LMS_MAX_MILLICPUS / 1000, text);
	*millicpus = v;
	return 0;
}

const char *
lms_signal_name(int sig)
{
	static const struct {
		int sig;
		const char *name;
	} names[] = {
	    {SIGHUP, "SIGHUP"},	      {SIGINT, "SIGINT"},   {SIGQUIT, "SIGQUIT"},   {SIGILL, "SIGILL"},
	    {SIGTRAP, "SIGTRAP"},     {SIGABRT, "SIGABRT"}, {SIGBUS, "SIGBUS"},	    {SIGFPE, "SIGFPE"},
	    {SIGKILL, "SIGKILL"},     {SIGUSR1, "SIGUSR1"}, {SIGSEGV, "SIGSEGV"},   {SIGUSR2, "SIGUSR2"},
	    {SIGPIPE, "SIGPIPE"},     {SIGALRM, "SIGALRM"}, {SIGTERM, "SIGTERM"},   {SIGCHLD, "SIGCHLD"},
	    {SIGCONT, "SIGCONT"},     {SIGSTOP, "SIGSTOP"}, {SIGTSTP, "SIGTSTP"},   {SIGTTIN, "SIGTTIN"},
	    {SIGTTOU, "SIGTTOU"},     {SIGURG, "SIGURG"},   {SIGXCPU, "SIGXCPU"},   {SIGXFSZ, "SIGXFSZ"},
	    {SIGVTALRM, "SIGVTALRM"}, {SIGPROF, "SIGPROF"}, {SIGWINCH, "SIGWINCH"}, {SIGIO, "SIGIO"},
	    {SIGPWR, "SIGPWR"},	      {SIGSYS, "SIGSYS"},
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].sig == sig)
			return names[i].name;
	return NULL;
}

bool
lms_limits_fit_prepared(const struct lms_limits *base, const struct lms_limits *want)
{
	/* Memory, pids and CPU bandwidth are cgroup values a launch can lower; the disk is the size of the scratch
	 * tmpfs, fixed before the sandbox dropped the privileges that could change it. */
	bool cpus = base->millicpus == 0 || (want->millicpus != 0 && want->millicpus <= base->millicpus);
	return want->memory_mb <= base->memory_mb && want->pids <= base->pids && want->disk_mb == base->disk_mb && cpus;
}

bool
lms_image_is_host(const char *image)
{
	return image == NULL || strcmp(image, LMS_IMAGE_HOST) == 0;
}

int
lms_image_check(const char *image, char *const *layers, struct lms_error **err)
{
	size_t n = 0;
	for (; layers && layers[n]; n++)
		if (layers[n][0] != '/' || strlen(layers[n]) >= 1024)
			return lms_error_set(err, LMS_ERR_INVALID, 0, "image layer '%.200s' is not an absolute path",
					     layers[n]);
	if (lms_image_is_host(image))
		return n == 0 ? 0
			      : lms_error_set(err, LMS_ERR_INVALID, 0,
					      "the '" LMS_IMAGE_HOST "' image has no layers, yet %zu were given", n);
	if (n == 0)
		return lms_error_set(err, LMS_ERR_NOT_FOUND, 0,
				     "image '%s' does not exist: import it with `lm-sandbox image import NAME FILE` "
				     "('" LMS_IMAGE_HOST "' is always there)",
				     image);
	if (n > LMS_MAX_LAYERS)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "image '%s' has %zu layers, more than %d", image, n,
				     LMS_MAX_LAYERS);
	return 0;
}
