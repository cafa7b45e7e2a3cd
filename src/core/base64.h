#pragma once
#include <stddef.h>

/* Decodes standard base64 (RFC 4648, `=` padding optional) of `len` bytes into out, which has room for
 * len / 4 * 3 + 3 bytes. The decoded length, or -1 on a byte outside the alphabet or a bad length. */
long lms_base64_decode(const char *in, size_t len, unsigned char *out);
