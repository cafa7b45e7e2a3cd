#pragma once
/* sha256 digests as OCI names blobs ("sha256:" and 64 lower-case hex digits): the importer's and the
 * puller's. libcrypto: lm-sandbox-client only. */
#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>

/* A sha256 context; aborts when out of memory. Free it with EVP_MD_CTX_free. */
EVP_MD_CTX *lms_sha256_new(void);

/* "sha256:HEX" of what went into ctx (which is then spent). A new string. */
char *lms_sha256_end(EVP_MD_CTX *ctx);

/* "sha256:HEX" of len bytes. A new string. */
char *lms_sha256_of(const void *data, size_t len);

/* d is "sha256:" and 64 lower-case hex digits. */
bool lms_digest_ok(const char *d);
