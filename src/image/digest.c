/* sha256 digests (digest.h). */
#include "image/digest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

EVP_MD_CTX *
lms_sha256_new(void)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		abort(); /* out of memory */
	return ctx;
}

char *
lms_sha256_end(EVP_MD_CTX *ctx)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	EVP_DigestFinal_ex(ctx, md, &n);
	char *out = xmalloc(8 + 2 * n);
	memcpy(out, "sha256:", 8);
	for (unsigned i = 0; i < n; i++)
		snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
	return out;
}

char *
lms_sha256_of(const void *data, size_t len)
{
	EVP_MD_CTX *ctx = lms_sha256_new();
	EVP_DigestUpdate(ctx, data, len);
	char *d = lms_sha256_end(ctx);
	EVP_MD_CTX_free(ctx);
	return d;
}

bool
lms_digest_ok(const char *d)
{
	return d != NULL && strncmp(d, "sha256:", 7) == 0 && strlen(d + 7) == 64 &&
	       strspn(d + 7, "0123456789abcdef") == 64;
}
