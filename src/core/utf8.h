#pragma once
#include <stddef.h>

/*
 * Returns a NUL-terminated copy of `len` bytes of `in` that is valid UTF-8: every byte sequence that
 * is not well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, nothing past U+10FFFF) becomes
 * U+FFFD, one per maximal invalid subpart as the Unicode standard recommends. NUL bytes are kept.
 * *out_len receives the length. The caller frees the result.
 */
char *lms_utf8_sanitize(const char *in, size_t len, size_t *out_len);

/*
 * The length (1..4) of the well-formed UTF-8 sequence at s (avail >= 1 bytes), or 0 with *bad set to
 * the length of its maximal invalid subpart (at least 1). No allocation, no locks: safe anywhere.
 */
size_t lms_utf8_sequence(const unsigned char *s, size_t avail, size_t *bad);
