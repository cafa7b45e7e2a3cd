#pragma once
#include <stddef.h>

/* Decodes standard base64 (RFC 4648, `=` padding optional) of `len` bytes into out, which has room for
 * len / 4 * 3 + 3 bytes. The decoded length, or -1 on a byte outside the alphabet or a bad length. */
long lms_base64_decode(const char *in, size_t len, unsigned char *out);

/* Encodes `len` bytes as standard base64 with `=` padding: a NUL-terminated string (caller frees) of
 * *out_len bytes (out_len may be NULL). */
char *lms_base64_encode(const void *data, size_t len, size_t *out_len);
