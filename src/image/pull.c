/* The puller (pull.h): a registry's manifest and blobs into an OCI layout, then the importer. */
#include "image/pull.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/fdio.h"
#include "core/human.h"
#include "image/digest.h"
#include "image/import.h"
#include "image/platform.h"
#include "image/reference.h"

#define TOKEN_MAX (64u << 10) /* a token server's answer */
#define ERROR_BODY_MAX 4096   /* what an error answer may bring (dropped: never shown) */
#define HEADER_MAX 2048	      /* WWW-Authenticate, Content-Type */
#define INDEX_DEPTH 4
#define CONNECT_TIMEOUT_S 30L
#define STALL_S 60L /* a transfer that moves no byte this long is given up */
#define MAX_REDIRECTS 5L
#define READ_BLOCK (256 * 1024)

#define ACCEPT_MANIFESTS                                                                                               \
	"Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "                \
	"application/vnd.docker.distribution.manifest.list.v2+json, "                                                  \
	"application/vnd.docker.distribution.manifest.v2+json"

struct puller {
	struct lms_image_ref ref;
	const char *scheme; /* "https", or "http" for a loopback registry or --insecure */
	bool insecure;
	bool progress;
	char *token; /* the bearer token the registry handed out, or NULL */
	CURL *curl;
	int blobsfd;		   /* STATE/images/pulls/blobs/sha256 */
	int layersfd;		   /* STATE/images/layers: what is stored already is not fetched */
	unsigned long long budget; /* blob bytes the rest of the pull may fetch */
	const char *what;	   /* the blob being fetched, for the progress line */
};

/* Where an answer's body goes: memory (up to cap), or a file (up to limit bytes, hashed as it comes). */
struct sink {
	struct puller *p;
	char *buf;
	size_t len, cap;
	int fd;
	EVP_MD_CTX *md;
	unsigned long long written, limit;
	unsigned long long from; /* a Range asked from here: a 200 (the whole blob) stops the transfer */
	bool whole;
	curl_off_t shown; /* the progress line's last figure, and when */
	double shown_at;
	bool over;	 /* the body passed its cap: the transfer was stopped */
	bool write_fail; /* the file could not be written */
	int write_errno;
	/* From the headers of the last response (a redirect's are replaced by its target's). */
	char www_auth[HEADER_MAX];
	char content_type[256];
	long status;
};

static size_t
on_header(char *data, size_t size, size_t n, void *userdata)
{
	struct sink *s = userdata;
	size_t len = size * n;
	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		s->www_auth[0] = s->content_type[0] = '\0';
		return len;
	}
	struct {
		const char *name;
		char *dest;
		size_t size;
	} want[] = {{"www-authenticate:", s->www_auth, sizeof(s->www_auth)},
		    {"content-type:", s->content_type, sizeof(s->content_type)}};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		size_t k = strlen(want[i].name);
		if (len <= k || strncasecmp(data, want[i].name, k) != 0)
			continue;
		const char *v = data + k;
		size_t vlen = len - k;
		while (vlen > 0 && (*v == ' ' || *v == '\t'))
			v++, vlen--;
		while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
			vlen--;
		if (vlen < want[i].size) { /* a longer one is not used */
			memcpy(want[i].dest, v, vlen);
			want[i].dest[vlen] = '\0';
		}
	}
	return len;
}

static size_t
on_body(char *data, size_t size, size_t n, void *userdata)
{
	struct sink *s = userdata;
	size_t len = size * n;
	long status = 0;
	curl_easy_getinfo(s->p->curl, CURLINFO_RESPONSE_CODE, &status);
	bool ok = status == 200 || status == 206;
	if (s->fd >= 0 && ok) {
		if (status == 200 && s->from > 0) {
			s->whole = true;
			return 0;
		}
		if (s->written + len > s->limit) {
			s->over = true;
			return 0;
		}
		if (lms_fd_write_all(s->fd, data, len) < 0) {
			s->write_fail = true;
			s->write_errno = errno;
			return 0;
		}
		EVP_DigestUpdate(s->md, data, len);
		s->written += len;
		return len;
	}
	/* Memory: a manifest or a token; an error's body is kept short and never shown. */
	size_t cap = ok ? s->cap : ERROR_BODY_MAX;
	if (s->len + len > cap) {
		if (!ok)
			return len; /* the rest of an error page is dropped */
		s->over = true;
		return 0;
	}
	s->buf = xrealloc(s->buf, s->len + len + 1);
	memcpy(s->buf + s->len, data, len);
	s->len += len;
	s->buf[s->len] = '\0';
	return len;
}

static int
on_progress(void *userdata, curl_off_t total, curl_off_t now, curl_off_t ut, curl_off_t un)
{
	(void)ut, (void)un;
	struct sink *s = userdata;
	double t = lms_monotonic_ms() / 1000.0;
	/* Five lines a second at most, and the last one once. */
	if (s->fd < 0 || total <= 0 || now == s->shown || (t - s->shown_at < 0.2 && now < total))
		return 0;
	s->shown_at = t;
	s->shown = now;
	char a[32], b[32];
	lms_human_bytes((unsigned long long)now, a);
	lms_human_bytes((unsigned long long)total, b);
	fprintf(stderr, "\r\033[K%.40s: %s / %s", s->p->what, a, b);
	return 0;
}

/* A libcurl failure as the error kinds of pull.h. */
static int
curl_failed(struct sink *s, CURLcode code, const char *url, struct lms_error **err)
{
	if (s->over)
		return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0,
				     "%s: the answer is larger than %llu bytes (the manifest's size, or the cap)", url,
				     s->fd >= 0 ? s->limit : (unsigned long long)s->cap);
	if (s->write_fail)
		return lms_error_set(err, LMS_ERR_SETUP, s->write_errno, "write the download of %s", url);
	enum lms_error_kind kind = LMS_ERR_BAD_GATEWAY;
	if (code == CURLE_COULDNT_RESOLVE_HOST || code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_PROXY)
		kind = LMS_ERR_UNREACHABLE;
	else if (code == CURLE_OPERATION_TIMEDOUT)
		kind = LMS_ERR_TIMEOUT;
	return lms_error_set(err, kind, 0, "GET %s: %s", url, curl_easy_strerror(code));
}

#define SETOPT(c, opt, val)                                                                                            \
	do {                                                                                                           \
		if (curl_easy_setopt(c, opt, val) != CURLE_OK)                                                         \
			return lms_error_set(err, LMS_ERR_INTERNAL, 0, "curl_easy_setopt(%s) failed", #opt);           \
	} while (0)

/* One GET of url into s, with the token when there is one and `auth` is set. s->status: the final status. */
static int
get_once(struct puller *p, const char *url, const char *accept, unsigned long long from, bool auth, struct sink *s,
	 struct lms_error **err)
{
	CURL *c = p->curl;
	curl_easy_reset(c);
	const char *protocols = p->insecure || p->ref.loopback ? "http,https" : "https";
	SETOPT(c, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
	SETOPT(c, CURLOPT_PROTOCOLS_STR, protocols);
	SETOPT(c, CURLOPT_REDIR_PROTOCOLS_STR, protocols);
#else
	long mask = strcmp(protocols, "https") == 0 ? CURLPROTO_HTTPS : CURLPROTO_HTTP | CURLPROTO_HTTPS;
	SETOPT(c, CURLOPT_PROTOCOLS, mask);
	SETOPT(c, CURLOPT_REDIR_PROTOCOLS, mask);
#endif
	/* Blobs redirect to storage elsewhere (Docker Hub's CDN); libcurl sends our Authorization header to the
	 * first host only (CURLOPT_UNRESTRICTED_AUTH stays off). */
	SETOPT(c, CURLOPT_FOLLOWLOCATION, 1L);
	SETOPT(c, CURLOPT_MAXREDIRS, MAX_REDIRECTS);
	SETOPT(c, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
	SETOPT(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	SETOPT(c, CURLOPT_LOW_SPEED_TIME, STALL_S);
	SETOPT(c, CURLOPT_NOSIGNAL, 1L);
	SETOPT(c, CURLOPT_USERAGENT, "lm-sandbox/" LMS_VERSION);
	SETOPT(c, CURLOPT_HEADERFUNCTION, on_header);
	SETOPT(c, CURLOPT_HEADERDATA, s);
	SETOPT(c, CURLOPT_WRITEFUNCTION, on_body);
	SETOPT(c, CURLOPT_WRITEDATA, s);
	if (p->progress && s->fd >= 0) {
		SETOPT(c, CURLOPT_NOPROGRESS, 0L);
		SETOPT(c, CURLOPT_XFERINFOFUNCTION, on_progress);
		SETOPT(c, CURLOPT_XFERINFODATA, s);
	}
	char range[64];
	if (from > 0) {
		snprintf(range, sizeof(range), "%llu-", from);
		SETOPT(c, CURLOPT_RANGE, range);
	}
	struct curl_slist *headers = NULL, *h;
	if (accept != NULL && (h = curl_slist_append(headers, accept)) != NULL)
		headers = h;
	_cleanup_free_ char *bearer = auth && p->token ? xasprintf("Authorization: Bearer %s", p->token) : NULL;
	if (bearer != NULL && (h = curl_slist_append(headers, bearer)) != NULL)
		headers = h;
	CURLcode code = curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	if (code == CURLE_OK)
		code = curl_easy_perform(c);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(headers);
	if (p->progress && s->fd >= 0)
		fputs("\r\033[K", stderr);
	if (code != CURLE_OK)
		return curl_failed(s, code, url, err);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &s->status);
	return 0;
}

/* The value of key="..." in a WWW-Authenticate challenge (quoted, no escapes: as registries write it). */
static char *
challenge_param(const char *ch, const char *key)
{
	size_t k = strlen(key);
	for (const char *at = ch; (at = strstr(at, key)) != NULL; at += k) {
		bool start = at == ch || at[-1] == ' ' || at[-1] == ',';
		if (!start || strncmp(at + k, "=\"", 2) != 0)
			continue;
		const char *v = at + k + 2, *end = strchr(v, '"');
		return end ? xstrndup(v, (size_t)(end - v)) : NULL;
	}
	return NULL;
}

/* 401 with `Bearer realm=..., service=..., scope=...`: an anonymous token from the realm. */
static int
fetch_token(struct puller *p, const char *challenge, struct lms_error **err)
{
	_cleanup_free_ char *realm = challenge_param(challenge, "realm");
	_cleanup_free_ char *service = challenge_param(challenge, "service");
	_cleanup_free_ char *scope = challenge_param(challenge, "scope");
	if (realm == NULL || (strncmp(realm, "https://", 8) != 0 && strncmp(realm, "http://", 7) != 0))
		return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0,
				     "%s asks for a bearer token but names no http(s) realm to get it from",
				     p->ref.registry);
	if (scope == NULL)
		scope = xasprintf("repository:%s:pull", p->ref.repository);
	char *s_esc = service ? curl_easy_escape(p->curl, service, 0) : NULL;
	char *sc_esc = curl_easy_escape(p->curl, scope, 0);
	if (sc_esc == NULL || (service && s_esc == NULL))
		abort(); /* out of memory */
	_cleanup_free_ char *url = xasprintf("%s%sscope=%s%s%s", realm, strchr(realm, '?') ? "&" : "?", sc_esc,
					     s_esc ? "&service=" : "", s_esc ? s_esc : "");
	curl_free(s_esc);
	curl_free(sc_esc);
	struct sink s = {.p = p, .fd = -1, .cap = TOKEN_MAX};
	int r = get_once(p, url, NULL, 0, false, &s, err);
	_cleanup_free_ char *body = s.buf;
	if (r < 0)
		return lms_error_prefix(err, "the token for %s", p->ref.registry);
	if (s.status != 200)
		return lms_error_set(err, LMS_ERR_FORBIDDEN, 0,
				     "the token server %s answered %ld to an anonymous request", realm, s.status);
	json_auto_t *j = json_loadb(body ? body : "", s.len, 0, NULL);
	const char *token = json_string_value(json_object_get(j, "token"));
	if (token == NULL)
		token = json_string_value(json_object_get(j, "access_token"));
	size_t n = token ? strlen(token) : 0;
	/* It goes into a header: printable ASCII only, so no answer can add a header of its own. */
	bool printable = n > 0 && n <= 16384;
	for (size_t i = 0; printable && i < n; i++)
		printable = token[i] > ' ' && token[i] < 127;
	if (!printable)
		return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0,
				     "the token server %s gave no token (JSON with a printable \"token\")", realm);
	free(p->token);
	p->token = xstrdup(token);
	return 0;
}

/* A GET of the registry's /v2/REPO/PATH, with the bearer dance when the registry asks for it. */
static int
get(struct puller *p, const char *path, const char *accept, unsigned long long from, struct sink *s,
    struct lms_error **err)
{
	_cleanup_free_ char *url = xasprintf("%s://%s/v2/%s/%s", p->scheme, p->ref.registry, p->ref.repository, path);
	for (int attempt = 0;; attempt++) {
		if (get_once(p, url, accept, from, true, s, err) < 0)
			return -1;
		if (s->status != 401 || attempt > 0)
			break;
		if (strncasecmp(s->www_auth, "Bearer ", 7) != 0)
			return lms_error_set(err, LMS_ERR_FORBIDDEN, 0,
					     "%s: 401 without a bearer challenge (only anonymous bearer tokens are "
					     "supported)",
					     url);
		if (fetch_token(p, s->www_auth, err) < 0)
			return -1;
		/* The error page of the 401 goes. */
		free(s->buf);
		s->buf = NULL;
		s->len = 0;
	}
	if (s->status == 200 || (from > 0 && s->status == 206))
		return 0;
	if (s->status == 401 || s->status == 403)
		return lms_error_set(err, LMS_ERR_FORBIDDEN, 0,
				     "%s answered %ld: the repository is private or does not exist (only anonymous "
				     "pulls are supported)",
				     url, s->status);
	if (s->status == 404)
		return lms_error_set(err, LMS_ERR_NOT_FOUND, 0, "%s: 404, no such repository, tag or blob", url);
	return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0, "%s answered %ld", url, s->status);
}

/* Writes bytes as the blob of their digest (a manifest). */
static int
put_blob(struct puller *p, const char *digest, const char *data, size_t len, struct lms_error **err)
{
	_cleanup_free_ char *part = xasprintf("%s.part", digest + 7);
	_cleanup_fd_ int fd = openat(p->blobsfd, part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || lms_fd_write_all(fd, data, len) < 0 || renameat(p->blobsfd, part, p->blobsfd, digest + 7) < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "store the manifest %s of the pull", digest);
	return 0;
}

/* The blob `digest` of `size` bytes into blobs/HEX: a finished one is kept, a .part resumed (Range), and
 * only a blob whose bytes match its digest takes its name. */
static int
fetch_blob(struct puller *p, const char *digest, json_int_t size, const char *what, struct lms_error **err)
{
	struct stat st;
	if (fstatat(p->blobsfd, digest + 7, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) && st.st_size == size)
		return 0; /* verified by the pull that was killed after it */
	_cleanup_free_ char *part = xasprintf("%s.part", digest + 7);
	_cleanup_fd_ int fd = openat(p->blobsfd, part, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || fstat(fd, &st) < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "open the download %s", part);
	EVP_MD_CTX *md = lms_sha256_new();
	/* What a killed pull fetched is hashed again and asked for no more; a part as long as the blob (or
	 * longer) did not verify before: it starts over. */
	unsigned long long have = (unsigned long long)st.st_size;
	if (have >= (unsigned long long)size)
		have = 0;
	char *block = xmalloc(READ_BLOCK);
	ssize_t n = 0;
	for (unsigned long long done = 0; done < have && (n = read(fd, block, READ_BLOCK)) > 0;
	     done += (unsigned long long)n)
		EVP_DigestUpdate(md, block, (size_t)n);
	free(block);
	if (have == 0 || n < 0) {
		have = 0;
		EVP_MD_CTX_free(md);
		md = lms_sha256_new();
		if (ftruncate(fd, 0) < 0) {
			EVP_MD_CTX_free(md);
			return lms_error_set(err, LMS_ERR_SETUP, errno, "truncate the download %s", part);
		}
	}
	if (lseek(fd, (off_t)have, SEEK_SET) < 0) {
		EVP_MD_CTX_free(md);
		return lms_error_set(err, LMS_ERR_SETUP, errno, "seek in the download %s", part);
	}
	struct sink s = {.p = p, .fd = fd, .md = md, .from = have, .limit = (unsigned long long)size - have};
	p->what = what;
	_cleanup_free_ char *path = xasprintf("blobs/%s", digest);
	int r = get(p, path, NULL, have, &s, err);
	free(s.buf);
	if (s.whole) {
		/* The registry answers a Range with the whole blob: taken from the start. */
		EVP_MD_CTX_free(md);
		if (err != NULL) {
			lms_error_free(*err);
			*err = NULL;
		}
		if (ftruncate(fd, 0) < 0)
			return lms_error_set(err, LMS_ERR_SETUP, errno, "truncate the download %s", part);
		return fetch_blob(p, digest, size, what, err);
	}
	_cleanup_free_ char *got = lms_sha256_end(md);
	EVP_MD_CTX_free(md);
	if (r < 0)
		return lms_error_prefix(err, "%s", what);
	if (have + s.written != (unsigned long long)size) {
		(void)unlinkat(p->blobsfd, part, 0);
		return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0, "%s %s: %llu bytes came, the manifest says %lld",
				     what, digest, have + s.written, (long long)size);
	}
	if (strcmp(got, digest) != 0) {
		(void)unlinkat(p->blobsfd, part, 0);
		return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0,
				     "%s: %s sent bytes whose digest is %s, not %s (damaged or forged): refused", what,
				     p->ref.registry, got, digest);
	}
	if (renameat(p->blobsfd, part, p->blobsfd, digest + 7) < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "store the blob %s", digest);
	return 0;
}

/* GET a manifest (or index) by tag or digest; `want`: the digest its bytes must have, or NULL (a tag). */
static json_t *
fetch_manifest(struct puller *p, const char *reference, const char *want, char **digest, char **raw, size_t *len,
	       struct lms_error **err)
{
	struct sink s = {.p = p, .fd = -1, .cap = LMS_PULL_MANIFEST_MAX};
	_cleanup_free_ char *path = xasprintf("manifests/%s", reference);
	if (get(p, path, ACCEPT_MANIFESTS, 0, &s, err) < 0) {
		free(s.buf);
		return NULL;
	}
	_cleanup_free_ char *body = s.buf ? s.buf : xstrdup("");
	*digest = lms_sha256_of(body, s.len);
	if (want != NULL && strcmp(*digest, want) != 0)
		return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0,
				     "the manifest %s from %s has the digest %s (damaged or forged): refused", want,
				     p->ref.registry, *digest),
		       NULL;
	json_error_t jerr;
	json_t *j = json_loadb(body, s.len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(j)) {
		json_decref(j);
		return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0, "the manifest %s of %s/%s is not a JSON object",
				     reference, p->ref.registry, p->ref.repository),
		       NULL;
	}
	*raw = steal_pointer(&body);
	*len = s.len;
	return j;
}

/* The blob sizes of the manifest, checked against the budget before any is fetched. */
static int
check_blob(struct puller *p, const json_t *desc, const char *what, unsigned long long cap, const char **digest,
	   json_int_t *size, struct lms_error **err)
{
	*digest = json_string_value(json_object_get(desc, "digest"));
	*size = json_integer_value(json_object_get(desc, "size"));
	if (!lms_digest_ok(*digest))
		return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0, "the manifest's %s has no sha256 digest", what);
	if (*size <= 0 || (unsigned long long)*size > cap || (unsigned long long)*size > p->budget)
		return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0,
				     "the manifest's %s is %lld bytes: more than the pull may fetch (--max-size %llu "
				     "left) or none",
				     what, (long long)*size, p->budget);
	p->budget -= (unsigned long long)*size;
	return 0;
}

static bool
layer_stored(struct puller *p, const char *digest)
{
	struct stat st;
	return fstatat(p->layersfd, digest + 7, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/* The manifest (through indexes), its config and its layers into the layout; index.json names it last. */
static int
fetch_image(struct puller *p, int layoutfd, struct lms_error **err)
{
	_cleanup_free_ char *digest = NULL, *raw = NULL;
	size_t len = 0;
	json_t *m = fetch_manifest(p, p->ref.reference, p->ref.digest, &digest, &raw, &len, err);
	for (int depth = 0; m != NULL && json_object_get(m, "manifests") != NULL; depth++) {
		const json_t *pick = lms_image_pick_manifest(m);
		const char *d = json_string_value(json_object_get(pick, "digest"));
		if (depth == INDEX_DEPTH || !lms_digest_ok(d)) {
			json_decref(m);
			return lms_error_set(err, LMS_ERR_NOT_FOUND, 0,
					     "%s/%s:%s has no image for linux/" LMS_IMAGE_HOST_ARCH
					     " (or its indexes nest deeper than %d)",
					     p->ref.registry, p->ref.repository, p->ref.reference, INDEX_DEPTH);
		}
		_cleanup_free_ char *want = xstrdup(d);
		json_decref(m);
		free(digest);
		free(raw);
		digest = raw = NULL;
		m = fetch_manifest(p, want, want, &digest, &raw, &len, err);
	}
	if (m == NULL)
		return -1;
	json_auto_t *manifest = m;
	json_int_t version = json_integer_value(json_object_get(manifest, "schemaVersion"));
	const json_t *layers = json_object_get(manifest, "layers");
	if (version != 2 || !json_is_object(json_object_get(manifest, "config")) || !json_is_array(layers))
		return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0,
				     "%s/%s:%s is not an OCI or Docker schema 2 image manifest (schema 1 is not "
				     "supported)",
				     p->ref.registry, p->ref.repository, p->ref.reference);
	size_t n = json_array_size(layers);
	if (n == 0 || n > LMS_IMAGE_MAX_LAYERS)
		return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0, "the manifest has %zu layers, not 1 to %d", n,
				     LMS_IMAGE_MAX_LAYERS);
	const char *cdigest;
	json_int_t csize;
	if (check_blob(p, json_object_get(manifest, "config"), "config", LMS_PULL_MANIFEST_MAX, &cdigest, &csize, err) <
	    0)
		return -1;
	const char *ld[LMS_IMAGE_MAX_LAYERS];
	json_int_t ls[LMS_IMAGE_MAX_LAYERS];
	for (size_t i = 0; i < n; i++) {
		char what[32];
		snprintf(what, sizeof(what), "layer %zu", i + 1);
		if (check_blob(p, json_array_get(layers, i), what, ~0ull, &ld[i], &ls[i], err) < 0)
			return -1;
	}
	if (put_blob(p, digest, raw, len, err) < 0 || fetch_blob(p, cdigest, csize, "config", err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (layer_stored(p, ld[i]))
			continue; /* unpacked in the store already: the importer takes it from there */
		char what[64];
		snprintf(what, sizeof(what), "layer %zu/%zu %.12s", i + 1, n, ld[i] + 7);
		if (fetch_blob(p, ld[i], ls[i], what, err) < 0)
			return -1;
	}
	/* The layout's index names the one manifest chosen: the importer reads the image from there. */
	json_auto_t *index =
	    json_pack("{s:i, s:[{s:s, s:s, s:I}]}", "schemaVersion", 2, "manifests", "mediaType",
		      "application/vnd.oci.image.manifest.v1+json", "digest", digest, "size", (json_int_t)len);
	_cleanup_free_ char *text = json_dumps(index, JSON_COMPACT);
	_cleanup_fd_ int fd = openat(layoutfd, "index.json", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (text == NULL || fd < 0 || lms_fd_write_all(fd, text, strlen(text)) < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "write the pull's index.json");
	return 0;
}

/* The pulls directory: STATE/images/pulls/{index.json,blobs/sha256/}, locked for the whole pull (one pull
 * at a time per store: two would write the same .part). */
static int
open_pulls(const char *state_dir, int *lockfd, int *layoutfd, int *blobsfd, struct lms_error **err)
{
	_cleanup_free_ char *dir = xasprintf("%s/images/pulls", state_dir);
	static const char *const subs[] = {"", "/blobs", "/blobs/sha256"};
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		_cleanup_free_ char *d = xasprintf("%s%s", dir, subs[i]);
		if (mkdir(d, 0700) < 0 && errno != EEXIST)
			return lms_error_set(err, LMS_ERR_SETUP, errno, "create %s", d);
	}
	_cleanup_free_ char *lock = xasprintf("%s/lock", dir), *blobs = xasprintf("%s/blobs/sha256", dir);
	*lockfd = open(lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (*lockfd < 0 || flock(*lockfd, LOCK_EX) < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "lock %s", lock);
	*layoutfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	*blobsfd = open(blobs, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (*layoutfd < 0 || *blobsfd < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "open %s", *layoutfd < 0 ? dir : blobs);
	return 0;
}

/* After an import: every download goes (this pull holds the lock: none is another's). */
static void
clear_pulls(int layoutfd, int blobsfd)
{
	DIR *d = fdopendir(dup(blobsfd));
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] != '.')
			(void)unlinkat(blobsfd, e->d_name, 0);
	}
	closedir(d);
	(void)unlinkat(layoutfd, "index.json", 0);
}

int
lms_image_pull(const char *state_dir, const char *text, const struct lms_pull_opts *opts, struct lms_image **out,
	       struct lms_error **err)
{
	*out = NULL;
	struct puller p = {.blobsfd = -1, .layersfd = -1};
	if (lms_image_ref_parse(text, &p.ref, err) < 0)
		return -1;
	_cleanup_free_ char *name = opts && opts->name ? xstrdup(opts->name) : lms_image_ref_default_name(&p.ref);
	int r = lms_image_name_check(name, err);
	if (r == 0 && (state_dir == NULL || state_dir[0] != '/'))
		r = lms_error_set(err, LMS_ERR_INVALID, 0, "--state-dir must be an absolute path");
	if (r < 0) {
		lms_image_ref_clear(&p.ref);
		return -1;
	}
	p.insecure = opts && opts->insecure;
	p.progress = opts && opts->progress;
	p.scheme = p.insecure || p.ref.loopback ? "http" : "https";
	p.budget = opts && opts->max_bytes ? opts->max_bytes : LMS_IMPORT_MAX_BYTES;
	_cleanup_fd_ int lockfd = -1, layoutfd = -1;
	_cleanup_free_ char *layers = xasprintf("%s/images/layers", state_dir);
	if (lms_image_store_make(state_dir, err) < 0 || open_pulls(state_dir, &lockfd, &layoutfd, &p.blobsfd, err) < 0)
		r = -1;
	else if ((p.layersfd = open(layers, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		r = lms_error_set(err, LMS_ERR_SETUP, errno, "open %s", layers);
	else if ((p.curl = curl_easy_init()) == NULL)
		r = lms_error_set(err, LMS_ERR_INTERNAL, 0, "curl_easy_init failed");
	if (r == 0)
		r = fetch_image(&p, layoutfd, err);
	if (p.curl != NULL)
		curl_easy_cleanup(p.curl);
	if (r == 0) {
		_cleanup_free_ char *layout = xasprintf("%s/images/pulls", state_dir);
		struct lms_import_opts io = {.max_bytes = opts ? opts->max_bytes : 0, .source = "registry"};
		r = lms_image_import(state_dir, name, layout, &io, out, err);
	}
	/* Imported: the downloads go. A failure keeps them (verified blobs, and parts to resume); the next
	 * pull that succeeds clears them. */
	if (r == 0)
		clear_pulls(layoutfd, p.blobsfd);
	if (p.blobsfd >= 0)
		close(p.blobsfd);
	if (p.layersfd >= 0)
		close(p.layersfd);
	free(p.token);
	lms_image_ref_clear(&p.ref);
	return r;
}
